"""MultiDelete (Cheng & Amiri, ECCV 2024; public code CLU-UML/MultiDelete): modality decoupling of the forget
pairs plus multimodal and unimodal knowledge retention against the frozen original."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliperase.config import UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    import torch

    from cliperase.training import Feats


@register_method
class MultiDelete(UnlearningMethod):
    name = "multidelete"
    help = "MultiDelete: decoupling + multimodal and unimodal retention (both towers, as published)"
    order = 40
    # The public code (vl_unlearn/runner_unlearn.py) fine-tunes every parameter (AdamW over all requires_grad
    # parameters); with the image tower frozen its unimodal image term would be identically zero.
    towers = "both"

    def needs(self, cfg: UnlearnConfig) -> dict[str, bool]:
        return {"forget": True, "retain": True, "frozen": True}

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

        assert f is not None and r is not None and orig_f is not None and orig_r is not None
        perm = losses.decouple_permutation(f.img.shape[0], cfg.seed, step)
        parts = losses.multidelete_losses(
            f.img,
            f.txt,
            r.img,
            r.txt,
            orig_f.img,
            orig_f.txt,
            orig_r.img,
            orig_r.txt,
            perm,
            cfg.multidelete_unimodal,
        )
        # The public code sums its three terms unweighted: loss = loss_md + loss_multi + loss_uni.
        return parts["decouple"] + parts["multimodal"] + parts["unimodal"], parts
