"""MultiDelete (Cheng & Amiri, ECCV 2024; public code CLU-UML/MultiDelete): modality decoupling of the forget
pairs plus multimodal and unimodal knowledge retention against the frozen original."""

from __future__ import annotations

from cliperase.methods.base import Objective, StepFeats, UnlearnConfig, UnlearningMethod, register_method


@register_method
class MultiDelete(UnlearningMethod):
    name, order, uses = "multidelete", 40, ("forget", "retain", "frozen")
    help = "MultiDelete: decoupling + multimodal and unimodal retention (both towers, as published)"
    # The public code (vl_unlearn/runner_unlearn.py) fine-tunes every parameter (AdamW over all requires_grad
    # parameters); with the image tower frozen its unimodal image term would be identically zero.
    towers = "both"

    def loss(self, cfg: UnlearnConfig, s: StepFeats) -> Objective:
        from cliperase import losses

        perm = losses.decouple_permutation(s.f.img.shape[0], cfg.seed, s.step)
        parts = losses.multidelete_losses(s.f.img, s.f.txt, s.r.img, s.r.txt, s.orig_f.img, s.orig_f.txt,
                                          s.orig_r.img, s.orig_r.txt, perm, cfg.multidelete_unimodal)
        # The public code sums its three terms unweighted: loss = loss_md + loss_multi + loss_uni.
        return self.total(**parts)
