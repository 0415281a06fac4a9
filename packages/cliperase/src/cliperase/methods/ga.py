"""Gradient ascent (GA) on the forget pairs' CLIP loss."""

from __future__ import annotations

from cliperase.methods.base import Objective, StepFeats, UnlearnConfig, UnlearningMethod, register_method


@register_method
class GradientAscent(UnlearningMethod):
    name, order, uses = "ga", 10, ("forget",)
    help = "gradient ascent on the forget pairs' CLIP loss"

    def loss(self, cfg: UnlearnConfig, s: StepFeats) -> Objective:
        from cliperase.losses import ga_loss

        return self.total(ga=ga_loss(s.f.img, s.f.txt, s.scale, s.f.texts))
