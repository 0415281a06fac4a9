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


def decouple_loss(
    img_f: torch.Tensor, txt_f: torch.Tensor, orig_img_f: torch.Tensor, orig_txt_perm: torch.Tensor
) -> torch.Tensor:
    """MultiDelete modality decoupling: the unlearned model's in-batch cosine similarity matrices on the
    forget pairs, image→text ``S' = n(I') n(T')ᵀ`` and text→image ``S'ᵀ``, matched (MSE over all n² entries)
    to the original model's on the same images with randomly permuted texts, ``S = n(I) n(T_π)ᵀ``:
    ``MSE(S, S') + MSE(Sᵀ, S'ᵀ)``. ``orig_txt_perm`` are the original's text features already permuted."""
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    sim_new = n(img_f) @ n(txt_f).T
    sim_orig = (n(orig_img_f) @ n(orig_txt_perm).T).detach()
    return F.mse_loss(sim_new, sim_orig) + F.mse_loss(sim_new.T, sim_orig.T)


def multimodal_retention_loss(
    img_r: torch.Tensor, txt_r: torch.Tensor, orig_img_r: torch.Tensor, orig_txt_r: torch.Tensor
) -> torch.Tensor:
    """MultiDelete multimodal knowledge retention on D_r: MSE of the fused embedding to the original's.
    CLIP has no fusion encoder (MultiDelete's ALBEF/BLIP use the fusion [CLS] output), so the fused
    embedding is the mean of the normalised image and text features, ``(n(I) + n(T)) / 2``."""
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    return F.mse_loss((n(img_r) + n(txt_r)) / 2, ((n(orig_img_r) + n(orig_txt_r)) / 2).detach())


def unimodal_retention_loss(
    img_f: torch.Tensor,
    txt_f: torch.Tensor,
    orig_img_f: torch.Tensor,
    orig_txt_f: torch.Tensor,
    modalities: str = "image+text",
) -> torch.Tensor:
    """MultiDelete unimodal knowledge retention on D_f (forget images with their own texts):
    ``MSE(n(I'), n(I)) + MSE(n(T'), n(T))``, or the image term alone with ``modalities="image"``."""
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    loss = F.mse_loss(n(img_f), n(orig_img_f).detach())
    if modalities == "image+text":
        loss = loss + F.mse_loss(n(txt_f), n(orig_txt_f).detach())
    elif modalities != "image":
        raise ValueError(f"modalities must be 'image+text' or 'image', got {modalities!r}")
    return loss


def decouple_permutation(n: int, seed: int, step: int) -> torch.Tensor:
    """The random text permutation of MultiDelete's decoupling term at one step (``torch.randperm`` as
    published: fixed points allowed). Depends only on (seed, step), so resumed and multi-process runs
    permute alike."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step + 0x3D) % 2**63)  # ints only: str hashes vary per process
    return torch.randperm(n, generator=g)


def multidelete_losses(
    img_f: torch.Tensor,
    txt_f: torch.Tensor,
    img_r: torch.Tensor,
    txt_r: torch.Tensor,
    orig_img_f: torch.Tensor,
    orig_txt_f: torch.Tensor,
    orig_img_r: torch.Tensor,
    orig_txt_r: torch.Tensor,
    perm: torch.Tensor,
    unimodal: str = "image+text",
) -> dict[str, torch.Tensor]:
    """MultiDelete (Cheng & Amiri, ECCV 2024; CLU-UML/MultiDelete ``vl_unlearn/task_unlearn.py``), its three
    MSE terms (``nn.MSELoss``, mean reduction), weighted 1 : 1 : 1 there:

    - ``decouple`` (:func:`decouple_loss`): forget pairs' full similarity matrices vs the original's with
      the texts permuted by ``perm``;
    - ``multimodal`` (:func:`multimodal_retention_loss`): fused retain embeddings vs the original's;
    - ``unimodal`` (:func:`unimodal_retention_loss`): forget image (and text) embeddings vs the original's."""
    perm = perm.to(orig_txt_f.device)
    return {
        "decouple": decouple_loss(img_f, txt_f, orig_img_f, orig_txt_f[perm]),
        "multimodal": multimodal_retention_loss(img_r, txt_r, orig_img_r, orig_txt_r),
        "unimodal": unimodal_retention_loss(img_f, txt_f, orig_img_f, orig_txt_f, unimodal),
    }
