"""CLIPErase (the paper): Forgetting (FM), Retention (RM) and Consistency (CM) modules,
L = λ_retain·L_RM + λ_forget·L_FM + λ_consistency·L_CM; ``cfg.modules`` selects the ablations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliperase.config import PAPER_SETTING, UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    import torch

    from cliperase.training import Feats


@register_method
class CLIPErase(UnlearningMethod):
    name = "cliperase"
    help = "CLIPErase: forgetting + retention + consistency modules (the paper)"
    order = 0
    variants = {
        "cliperase-fm": {"modules": "fm"},
        "cliperase-fm+rm": {"modules": "fm+rm"},
        "cliperase-fm+rm+cm": {"modules": "fm+rm+cm"},
        "cliperase-negce": {"fm_variant": "negated_ce"},
        "cliperase-dot": {"similarity": "dot"},
        "cliperase-paper": PAPER_SETTING,  # both encoders trained, forget pairs with their captions
    }

    def needs(self, cfg: UnlearnConfig) -> dict[str, bool]:
        mods = cfg.modules.split("+")
        return {"forget": True, "retain": "rm" in mods or "cm" in mods, "frozen": "cm" in mods}

    def frozen_keys(self, cfg: UnlearnConfig) -> set[str]:
        return {"r"}  # CM compares with the original on retain batches only

    def loss(
        self,
        cfg: UnlearnConfig,
        scale: torch.Tensor,
        f: Feats | None,
        r: Feats | None,
        orig_f: Feats | None = None,
        orig_r: Feats | None = None,
        orig_scale: torch.Tensor | None = None,
        step: int = 0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from cliperase import losses

        assert f is not None
        mods = cfg.modules.split("+")
        if cfg.fm_variant == "similarity":
            fm = losses.forget_loss(f.img, f.txt, cfg.similarity, cfg.fm_margin)
        else:
            fm = losses.negated_ce_forget_loss(f.img, f.txt, scale)
        parts = {"fm": fm}
        total = cfg.lambda_forget * fm
        if "rm" in mods:
            assert r is not None
            parts["rm"] = losses.retain_loss(r.img, r.txt, scale, r.texts)
            total = total + cfg.lambda_retain * parts["rm"]
        if "cm" in mods:
            assert r is not None and orig_r is not None and orig_scale is not None
            parts["cm"] = losses.consistency_loss(r.img, r.txt, scale, orig_r.img, orig_r.txt, orig_scale)
            total = total + cfg.lambda_consistency * parts["cm"]
        return total, parts
