"""Gradient difference: ascent on the forget pairs' CLIP loss, descent on the retain pairs'."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliperase.config import UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    import torch

    from cliperase.training import Feats


@register_method
class GradDiff(UnlearningMethod):
    name = "graddiff"
    help = "gradient difference: ascent on forget pairs, descent on retain pairs"
    order = 20

    def needs(self, cfg: UnlearnConfig) -> dict[str, bool]:
        return {"forget": True, "retain": True, "frozen": False}

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

        assert f is not None and r is not None
        parts = {
            "forget_clip": -losses.contrastive_loss(f.img, f.txt, scale, f.texts),
            "retain_clip": losses.contrastive_loss(r.img, r.txt, scale, r.texts),
        }
        return parts["forget_clip"] + parts["retain_clip"], parts
