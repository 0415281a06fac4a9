"""Per-method objective: which batches a method needs and how its loss is assembled.

Every method shares the training loop in :mod:`cliperase.trainer`; it only differs here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cliperase import losses
from cliperase.config import UnlearnConfig


@dataclass
class Feats:
    """Features of a global batch of pairs (rows matched) and their caption texts."""

    img: torch.Tensor
    txt: torch.Tensor
    texts: list[str]


def needs(cfg: UnlearnConfig) -> dict[str, bool]:
    """Which inputs a method uses: forget batch, retain batch, frozen original model."""
    m = cfg.method
    if m == "cliperase":
        mods = cfg.modules.split("+")
        return {"forget": True, "retain": "rm" in mods or "cm" in mods, "frozen": "cm" in mods}
    if m == "ga":
        return {"forget": True, "retain": False, "frozen": False}
    if m == "graddiff":
        return {"forget": True, "retain": True, "frozen": False}
    if m == "ft":
        return {"forget": False, "retain": True, "frozen": False}
    if m == "multidelete":
        return {"forget": True, "retain": True, "frozen": True}
    raise ValueError(f"method {m!r} has no unlearning objective (retrain trains from scratch)")


def method_loss(
    cfg: UnlearnConfig,
    scale: torch.Tensor,
    f: Feats | None,
    r: Feats | None,
    orig_f: Feats | None = None,
    orig_r: Feats | None = None,
    orig_scale: torch.Tensor | None = None,
    step: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The method's total loss and its named parts (floats, for logging). ``step`` seeds the per-step
    randomness of a method (MultiDelete's text permutation)."""
    parts: dict[str, torch.Tensor] = {}
    m = cfg.method
    if m == "cliperase":
        assert f is not None
        mods = cfg.modules.split("+")
        if cfg.fm_variant == "similarity":
            fm = losses.forget_loss(f.img, f.txt, cfg.similarity, cfg.fm_margin)
        else:
            fm = losses.negated_ce_forget_loss(f.img, f.txt, scale)
        parts["fm"] = fm
        total = cfg.lambda_forget * fm
        if "rm" in mods:
            assert r is not None
            parts["rm"] = losses.retain_loss(r.img, r.txt, scale, r.texts)
            total = total + cfg.lambda_retain * parts["rm"]
        if "cm" in mods:
            assert r is not None and orig_r is not None and orig_scale is not None
            parts["cm"] = losses.consistency_loss(r.img, r.txt, scale, orig_r.img, orig_r.txt, orig_scale)
            total = total + cfg.lambda_consistency * parts["cm"]
    elif m == "ga":
        assert f is not None
        total = parts["ga"] = losses.ga_loss(f.img, f.txt, scale, f.texts)
    elif m == "graddiff":
        assert f is not None and r is not None
        parts["forget_clip"] = -losses.contrastive_loss(f.img, f.txt, scale, f.texts)
        parts["retain_clip"] = losses.contrastive_loss(r.img, r.txt, scale, r.texts)
        total = parts["forget_clip"] + parts["retain_clip"]
    elif m == "ft":
        assert r is not None
        total = parts["retain_clip"] = losses.contrastive_loss(r.img, r.txt, scale, r.texts)
    elif m == "multidelete":
        assert f is not None and r is not None and orig_f is not None and orig_r is not None
        perm = losses.decouple_permutation(f.img.shape[0], cfg.seed, step)
        parts.update(losses.multidelete_losses(f.img, f.txt, r.img, r.txt, orig_f.img, orig_f.txt, orig_r.img,
                                               orig_r.txt, perm, cfg.multidelete_unimodal))
        # The public code sums its three terms unweighted: loss = loss_md + loss_multi + loss_uni.
        total = parts["decouple"] + parts["multimodal"] + parts["unimodal"]
    else:
        raise ValueError(f"method {m!r} has no unlearning objective")
    return total, {k: float(v.detach()) for k, v in parts.items()}
