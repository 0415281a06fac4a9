"""The AVQA model registry: one :class:`AVQAModelSpec` per model, registered by name, the way open_clip and
diffusers build parts by name. ``sasrnet.model.build_model``, the training and evaluation recipes, the CLI's
``--model`` help and ``mm avqa models`` read it; nothing else tests a model's name.

A new model is a module with an ``nn.Module`` taking a :class:`sasrnet.config.ModelConfig` (``forward(batch)``
returning at least ``{"logits": ...}``; ``sasrnet.model.compute_loss`` adds the match and source terms when
their outputs are there) and one :func:`register_avqa_model` call; the generic loop
(:func:`sasrnet.recipes.train.train`, :func:`sasrnet.recipes.evaluate.evaluate`) trains and evaluates it.
Importing this module loads no torch: a spec names its class as ``"module:Class"``, imported when built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from mmcore.errors import ConfigError
from mmcore.registry import Registry


@dataclass(frozen=True)
class AVQAModelSpec:
    """One AVQA model. ``builder``: a class or factory taking a ModelConfig, or its ``"module:attr"`` path."""

    name: str
    builder: Any
    help: str = ""
    uses_video: bool = True  # reads the audio and visual features (False: the question only)
    source_tokens: bool = False  # SaSR-Net's source-wise learnable tokens (the SaSR module)
    # has the audio-visual match head and ``grounding_forward`` (ST-AVQA's grounding pre-training)
    grounding: bool = False
    # exposes the attention and stream outputs that sasrnet.diagnostics measures each epoch
    diagnostics: bool = False

    def build(self, cfg: Any) -> Any:
        """The model of ``cfg`` (a :class:`sasrnet.config.ModelConfig` whose ``kind`` is this spec's name)."""
        builder = self.builder
        if isinstance(builder, str):
            module, attr = builder.split(":")
            builder = getattr(importlib.import_module(module), attr)
        return builder(cfg)


_REGISTRY: Registry[AVQAModelSpec] = Registry("AVQA model")


def register_avqa_model(spec: AVQAModelSpec) -> AVQAModelSpec:
    """Make ``spec`` buildable and trainable by its name (``mm avqa train --model NAME``)."""
    return _REGISTRY.register(spec.name, spec)


def unregister_avqa_model(name: str) -> None:
    """Remove model ``name`` (a test's or a plugin's cleanup)."""
    _REGISTRY.unregister(name)


def avqa_model_names() -> list[str]:
    """The registered models, in registration order."""
    return [s.name for s in _REGISTRY]


def avqa_model_spec(name: str) -> AVQAModelSpec:
    """The spec of model ``name``; a ConfigError naming the choices otherwise."""
    spec = _REGISTRY.find(name)
    if spec is None:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(avqa_model_names())}")
    return spec


# The built-in models share one network file, sasrnet/model.py: AVST is SaSR-Net without the SaSR module
# (the paper's ablation), the question-only model its question encoder and answer head.
for _spec in (
    AVQAModelSpec("sasrnet", "sasrnet.model:AVQAModel", "SaSR-Net (the paper): source-wise tokens + spatial / "
                  "temporal attention", source_tokens=True, grounding=True, diagnostics=True),
    AVQAModelSpec("avst", "sasrnet.model:AVQAModel", "AVST (ST-AVQA, CVPR 2022): SaSR-Net without the source tokens",
                  grounding=True, diagnostics=True),
    AVQAModelSpec("blind", "sasrnet.model:AVQAModel", "question only: measures the answer bias", uses_video=False),
):
    register_avqa_model(_spec)
