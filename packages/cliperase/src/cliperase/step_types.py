"""The values that pass between the unlearning loops and the methods (:mod:`cliperase.methods`): a batch's
features (:class:`Feats`), what one step's loss sees (:class:`StepFeats`) and what a run returns
(:class:`UnlearnResult`). Torch-free at import, so the method registry is too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class Feats:
    """Features of a global batch of pairs (rows matched) and their caption texts."""

    img: torch.Tensor
    txt: torch.Tensor
    texts: list[str]


@dataclass
class StepFeats:
    """What one unlearning step's loss sees: the forget (``f``) and retain (``r``) batches' features, the frozen
    original's features of them (``orig_f`` / ``orig_r``; None where the method needs none), both logit scales
    (``exp``) and the step (which seeds per-step randomness, e.g. MultiDelete's text permutation)."""

    scale: torch.Tensor
    f: Feats | None = None
    r: Feats | None = None
    orig_f: Feats | None = None
    orig_r: Feats | None = None
    orig_scale: torch.Tensor | None = None
    step: int = 0


@dataclass
class UnlearnResult:
    """An unlearning run's model (changed in place), its training time and steps, and the method's record."""

    model: nn.Module
    train_seconds: float
    steps: int
    resumed_from: int = 0
    last_log: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # method-specific record (SLUG: layer, step, search)
