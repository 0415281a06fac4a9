"""CLIPErase (the paper): Forgetting (FM), Retention (RM) and Consistency (CM) modules,
L = λ_retain·L_RM + λ_forget·L_FM + λ_consistency·L_CM; ``cfg.modules`` selects the ablations."""

from __future__ import annotations

from cliperase.config import PAPER_SETTING
from cliperase.methods.base import Objective, StepFeats, UnlearnConfig, UnlearningMethod, register_method


@register_method
class CLIPErase(UnlearningMethod):
    name, order = "cliperase", 0
    help = "CLIPErase: forgetting + retention + consistency modules (the paper)"
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

    def loss(self, cfg: UnlearnConfig, s: StepFeats) -> Objective:
        from cliperase import losses

        f, r, mods = s.f, s.r, cfg.modules.split("+")
        if cfg.fm_variant == "similarity":
            parts = {"fm": losses.forget_loss(f.img, f.txt, cfg.similarity, cfg.fm_margin)}
        else:
            parts = {"fm": losses.negated_ce_forget_loss(f.img, f.txt, s.scale)}
        weights = {"fm": cfg.lambda_forget, "rm": cfg.lambda_retain, "cm": cfg.lambda_consistency}
        if "rm" in mods:
            parts["rm"] = losses.retain_loss(r.img, r.txt, s.scale, r.texts)
        if "cm" in mods:
            o = s.orig_r
            parts["cm"] = losses.consistency_loss(r.img, r.txt, s.scale, o.img, o.txt, s.orig_scale)
        return self.total(weights, **parts)
