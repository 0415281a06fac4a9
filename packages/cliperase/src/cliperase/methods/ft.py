"""Fine-tuning (FT) on the retain pairs alone: D_f fades by catastrophic forgetting."""

from __future__ import annotations

from cliperase.methods.base import Objective, StepFeats, UnlearnConfig, UnlearningMethod, register_method


@register_method
class FineTune(UnlearningMethod):
    name, order, uses = "ft", 30, ("retain",)
    help = "fine-tuning on the retain pairs alone"

    def loss(self, cfg: UnlearnConfig, s: StepFeats) -> Objective:
        from cliperase.losses import contrastive_loss

        retain = s.r
        return self.total(retain_clip=contrastive_loss(retain.img, retain.txt, s.scale, retain.texts))
