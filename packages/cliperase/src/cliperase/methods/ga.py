"""Gradient ascent on the forget pairs' CLIP loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliperase.config import UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    import torch

    from cliperase.training import Feats


@register_method
class GradientAscent(UnlearningMethod):
    name = "ga"
    help = "gradient ascent on the forget pairs' CLIP loss"
    order = 10

    def needs(self, cfg: UnlearnConfig) -> dict[str, bool]:
        return {"forget": True, "retain": False, "frozen": False}

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
        ga = losses.ga_loss(f.img, f.txt, scale, f.texts)
        return ga, {"ga": ga}
