"""Losses of CLIPErase and of the baselines.

All functions take features of the *global* batch (already gathered across processes), so a
multi-process run computes exactly the single-process loss. ``img`` and ``txt`` rows are matched
pairs: row i of ``img`` belongs with row i of ``txt``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_similarity(img: torch.Tensor, txt: torch.Tensor, similarity: str = "cosine") -> torch.Tensor:
    """Similarity of each matched pair (a vector): cosine on L2-normalised features, or raw dot product."""
    if similarity == "cosine":
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
    return (img * txt).sum(-1)


def forget_loss(
    img: torch.Tensor, txt: torch.Tensor, similarity: str = "cosine", margin: float | None = None
) -> torch.Tensor:
    """Forgetting Module: mean similarity of matched forget pairs, minimised so it goes to zero or below.

    With ``margin`` m, only similarity above m is penalised (``mean(relu(sim - m))``), which stops
    pushing once the pair is dissociated; ``None`` is the plain mean of the paper's description."""
    sim = pair_similarity(img, txt, similarity)
    if margin is None:
        return sim.mean()
    return F.relu(sim - margin).mean()


def _logits(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    return logit_scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T


def contrastive_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    logit_scale: torch.Tensor | float,
    texts: list[str] | None = None,
) -> torch.Tensor:
    """Symmetric CLIP InfoNCE with the model's logit scale (features normalised here).

    Delegates to :func:`mmcore.clip_train.clip_loss`, which treats rows with identical caption text
    as positives of each other (synthetic captions repeat within a batch)."""
    from mmcore.clip_train import clip_loss

    return clip_loss(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), logit_scale, texts=texts)


def retain_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale, texts: list[str] | None = None) -> torch.Tensor:
    """Retention Module: the ordinary CLIP loss on retain pairs."""
    return contrastive_loss(img, txt, logit_scale, texts)


def negated_ce_forget_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale) -> torch.Tensor:
    """FM variant: gradient ascent on the forget rows' image→text and text→image cross-entropy,
    i.e. ``-(CE(logits, diag) + CE(logits.T, diag)) / 2`` within the forget batch."""
    logits = _logits(img, txt, logit_scale)
    target = torch.arange(logits.shape[0], device=logits.device)
    return -(F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def consistency_loss(
    img_new: torch.Tensor,
    txt_new: torch.Tensor,
    scale_new,
    img_orig: torch.Tensor,
    txt_orig: torch.Tensor,
    scale_orig,
) -> torch.Tensor:
    """Consistency Module: KL(p_orig || p_new) of the row softmaxes of the in-batch image→text logits
    plus the same for text→image, averaged over rows. ``*_orig`` come from the frozen original model."""
    new = _logits(img_new, txt_new, scale_new)
    orig = _logits(img_orig, txt_orig, scale_orig).detach()
    kl_i2t = F.kl_div(F.log_softmax(new, dim=1), F.log_softmax(orig, dim=1), log_target=True, reduction="batchmean")
    kl_t2i = F.kl_div(F.log_softmax(new.T, dim=1), F.log_softmax(orig.T, dim=1), log_target=True, reduction="batchmean")
    return kl_i2t + kl_t2i


def ga_loss(img_f: torch.Tensor, txt_f: torch.Tensor, logit_scale, texts_f: list[str] | None = None) -> torch.Tensor:
    """Gradient ascent: minimise −L_CLIP on the forget set."""
    return -contrastive_loss(img_f, txt_f, logit_scale, texts_f)


def graddiff_loss(
    img_f: torch.Tensor,
    txt_f: torch.Tensor,
    img_r: torch.Tensor,
    txt_r: torch.Tensor,
    logit_scale,
    texts_f: list[str] | None = None,
    texts_r: list[str] | None = None,
) -> torch.Tensor:
    """GradDiff: −L_CLIP(D_f) + L_CLIP(D_r)."""
    return ga_loss(img_f, txt_f, logit_scale, texts_f) + contrastive_loss(img_r, txt_r, logit_scale, texts_r)


def multidelete_losses(
    img_f: torch.Tensor,
    txt_f: torch.Tensor,
    img_r: torch.Tensor,
    txt_r: torch.Tensor,
    orig_img_f: torch.Tensor,
    orig_txt_f: torch.Tensor,
    orig_img_r: torch.Tensor,
    orig_txt_r: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """MultiDelete (ECCV 2024), three MSE terms on normalised features:

    - ``decouple``: each matched forget pair's similarity is matched to the original model's
      similarity of a mismatched pair (image i with text i+1, a fixed derangement);
    - ``multimodal``: fused retain embeddings (img + txt) / 2 matched to the original's;
    - ``unimodal``: retain image and text embeddings matched to the original's."""
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    sim_new = (n(img_f) * n(txt_f)).sum(-1)
    if img_f.shape[0] > 1:
        target = (n(orig_img_f) * n(orig_txt_f).roll(1, dims=0)).sum(-1)
    else:  # a single forget pair has no mismatched partner: decouple towards zero similarity
        target = torch.zeros_like(sim_new)
    decouple = F.mse_loss(sim_new, target.detach())
    multimodal = F.mse_loss((n(img_r) + n(txt_r)) / 2, ((n(orig_img_r) + n(orig_txt_r)) / 2).detach())
    unimodal = F.mse_loss(n(img_r), n(orig_img_r).detach()) + F.mse_loss(n(txt_r), n(orig_txt_r).detach())
    return {"decouple": decouple, "multimodal": multimodal, "unimodal": unimodal}
