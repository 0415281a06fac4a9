"""Optimizer construction for the CLIP training loops (pretraining, Retrain, unlearning, relearning).

One reason to exist: PyTorch's default (for-loop) Adam costs about 7x more per step on the CPU than
its fused kernel (measured: 53 ms vs 7.5 ms for the tiny CLIP's 12 M parameters, 1 thread), which is
a large share of a short fine-tuning step. The fused kernel computes the same update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

_FUSED_DEVICES = ("cpu", "cuda")


def _params(groups: list[Any]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for g in groups:
        out += list(g["params"]) if isinstance(g, dict) else [g]
    return out


def adam(
    params: Iterable[Any],
    lr: float,
    *,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """Adam (``decoupled=False``) or AdamW over ``params`` (tensors or param-group dicts), using the fused
    kernel when every parameter is a floating-point tensor on a CPU or CUDA device."""
    groups = list(params)
    ps = _params(groups)
    fused = bool(ps) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in ps) and len(
        {p.device for p in ps}) == 1
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused or None)
