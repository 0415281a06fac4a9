"""Unlearning methods by name: the registry (:mod:`cliperase.methods.base`) and the built-in methods, one
module each. Importing this package registers them; it loads no torch (the CLI lists methods from it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cliperase.config import UnlearnConfig
from cliperase.methods import clip_erase, ft, ga, graddiff, multidelete, retrain, slug  # noqa: F401  (registers)
from cliperase.methods.base import (
    UnlearningMethod,
    get_method,
    method_names,
    method_variants,
    parse_method,
    reference_method,
    register_method,
    unregister_method,
)
from cliperase.step_types import Feats, StepFeats, UnlearnResult

if TYPE_CHECKING:
    import torch

__all__ = [
    "Feats",
    "StepFeats",
    "UnlearnResult",
    "UnlearningMethod",
    "get_method",
    "method_loss",
    "method_names",
    "method_variants",
    "needs",
    "parse_method",
    "reference_method",
    "register_method",
    "unlearn",
    "unregister_method",
]


def unlearn(
    bundle: Any, split: Any, cfg: UnlearnConfig, accelerator: Any, run: Any = None, desc: str | None = None
) -> UnlearnResult:
    """Unlearn ``split``'s forget set from ``bundle.model`` with ``cfg.method`` (the model is changed in place
    and returned in the result). ``run``: a :class:`mmcore.run.TrainingRun` for logs and checkpoints."""
    method = get_method(cfg.method)
    method.check(cfg)
    return method.unlearn(bundle, split, cfg, accelerator, run, desc)


def needs(cfg: UnlearnConfig) -> dict[str, bool]:
    """Which inputs ``cfg.method``'s loss uses: forget batch, retain batch, frozen original model."""
    return get_method(cfg.method).needs(cfg)


def method_loss(cfg: UnlearnConfig, scale: torch.Tensor, f: Feats | None, r: Feats | None,
                orig_f: Feats | None = None, orig_r: Feats | None = None, orig_scale: torch.Tensor | None = None,
                step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """``cfg.method``'s total loss of one step and its named parts as floats (for logging)."""
    total, parts = get_method(cfg.method).loss(cfg, StepFeats(scale, f, r, orig_f, orig_r, orig_scale, step))
    return total, {k: float(v.detach()) for k, v in parts.items()}
