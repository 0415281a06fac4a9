"""Intervals shared by the benchmarks: the percentile bootstrap of a mean of paired differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def bootstrap_mean(d: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean of ``d`` (per-unit values or paired differences: one per question, per (seed, class), ...) with a
    95 % percentile interval from resampling the units with replacement. ``{"mean", "ci95", "n", "resamples"}``;
    mean and interval None for no unit."""
    import numpy as np

    x = np.asarray(d, dtype=float)
    if not len(x):
        return {"mean": None, "ci95": [None, None], "n": 0, "resamples": n_boot}
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": float(x.mean()), "ci95": [float(lo), float(hi)], "n": len(x), "resamples": n_boot}
