"""SLUG, Single Layer Unlearning Gradient (Cai, Tan, Asif, ICML 2025): one gradient pass and one update of one
layer (:mod:`cliperase.slug`); no steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cliperase.config import UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    from cliperase.step_types import UnlearnResult


@register_method
class Slug(UnlearningMethod):
    name = "slug"
    help = "SLUG: one gradient step on one layer chosen on a Pareto front (no steps)"
    order = 50
    # The public code ranks the layers of both towers (a Pareto front per tower) and may update either.
    towers = "both"
    uses_steps = False
    in_compare_default = False

    def check(self, cfg: UnlearnConfig) -> None:
        from mmcore.encoders.family import detect_family
        from mmcore.errors import ConfigError

        family = detect_family(cfg.model)
        if family not in (None, "clip"):  # its tower split reads open_clip's parameter names
            raise ConfigError(f"method 'slug' ranks the layers of open_clip CLIP towers; {cfg.model!r} is a "
                              f"{family.upper()} model")

    def unlearn(self, bundle: Any, split: Any, cfg: UnlearnConfig, accelerator: Any, run: Any = None,
                desc: str | None = None) -> UnlearnResult:
        from cliperase.slug import slug_unlearn

        # the towers whose layers the search ranks: SLUG's own (both) unless the config says otherwise
        return slug_unlearn(bundle, split, cfg, accelerator, run, towers=self.towers_for(cfg))

    def result_metrics(self, result: UnlearnResult) -> dict[str, Any]:
        return {"slug": result.info}
