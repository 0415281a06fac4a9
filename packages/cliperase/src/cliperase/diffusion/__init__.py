"""Building blocks of the diffusion evaluation of unlearned CLIP text encoders: the pipeline, the shape
detectors, the synthetic data.

* :func:`swap_text_encoder`, :func:`load_pipeline`, :class:`ShapesDiffusionPipeline`;
* :class:`ShapeDetector`, :class:`ClipZeroShotDetector`, :func:`clip_score`.

The runs are recipes: :mod:`cliperase.recipes.diffusion_pretrain` (the offline default text-to-image model
and its shape detector) and :mod:`cliperase.recipes.diffusion_eval` (original vs unlearned text encoder).

Submodules import torch/diffusers; names here are loaded lazily so ``import cliperase.diffusion`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ShapesDiffusionPipeline": "pipeline",
    "load_pipeline": "pipeline",
    "swap_text_encoder": "pipeline",
    "text_tower_from_clip": "pipeline",
    "encode_prompts": "pipeline",
    "generate": "pipeline",
    "ShapeDetector": "detector",
    "ClipZeroShotDetector": "detector",
    "clip_score": "detector",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cliperase.diffusion.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cliperase.diffusion' has no attribute {name!r}")
