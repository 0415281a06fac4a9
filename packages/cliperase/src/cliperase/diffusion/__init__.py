"""Diffusion evaluation of unlearned CLIP text encoders (issue 4).

* :func:`pretrain_diffusion` — the offline default text-to-image model (+ shape detector) on synthetic shapes;
* :func:`run_diffusion_eval` / :func:`diffusion_eval` — original vs unlearned text encoder in one pipeline;
* :func:`swap_text_encoder`, :func:`load_pipeline`, :class:`ShapesDiffusionPipeline`.

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
    "DiffusionPretrainConfig": "train",
    "PRESETS": "train",
    "apply_preset": "train",
    "pretrain_diffusion": "train",
    "DiffusionEvalConfig": "evaluate",
    "diffusion_eval": "evaluate",
    "run_diffusion_eval": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cliperase.diffusion.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cliperase.diffusion' has no attribute {name!r}")
