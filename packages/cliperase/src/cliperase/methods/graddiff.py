"""Gradient difference: ascent on the forget pairs' CLIP loss, descent on the retain pairs'."""

from __future__ import annotations

from cliperase.methods.base import Objective, StepFeats, UnlearnConfig, UnlearningMethod, register_method


@register_method
class GradDiff(UnlearningMethod):
    name, order, uses = "graddiff", 20, ("forget", "retain")
    help = "gradient difference: ascent on forget pairs, descent on retain pairs"

    def loss(self, cfg: UnlearnConfig, s: StepFeats) -> Objective:
        from cliperase.losses import contrastive_loss as clip_loss

        f, r = s.f, s.r
        return self.total(forget_clip=-clip_loss(f.img, f.txt, s.scale, f.texts),
                          retain_clip=clip_loss(r.img, r.txt, s.scale, r.texts))
