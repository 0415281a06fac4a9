"""Fine-tuning on the retain pairs alone (catastrophic forgetting of D_f)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliperase.config import UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    import torch

    from cliperase.training import Feats


@register_method
class FineTune(UnlearningMethod):
    name = "ft"
    help = "fine-tuning on the retain pairs alone"
    order = 30

    def needs(self, cfg: UnlearnConfig) -> dict[str, bool]:
        return {"forget": False, "retain": True, "frozen": False}

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

        assert r is not None
        retain = losses.contrastive_loss(r.img, r.txt, scale, r.texts)
        return retain, {"retain_clip": retain}
