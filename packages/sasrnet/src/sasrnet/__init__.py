"""sasrnet: SaSR-Net (source-aware semantic representations, EMNLP 2024 Findings) for audio-visual
question answering, with the AVST (ST-AVQA) and question-only baselines on the same input pipeline.

    import sasrnet

    model = sasrnet.build_model(sasrnet.model_config("sasrnet", "cpu-small"))          # a torch module
    metrics = sasrnet.train(sasrnet.TrainConfig(model="sasrnet", size="cpu-small", epochs=10), "DATA_DIR", "runs/s")
    sasrnet.evaluate("runs/s", "DATA_DIR", "runs/s-eval")                              # per-type accuracies
    sasrnet.predict("runs/s", "clip.mp4", "How many instruments are sounding?")
    official = sasrnet.load_official("sasr_net.pt")                                     # the authors' checkpoint

Building blocks: ``config`` (ModelConfig with the paper default + CPU sizes, TrainConfig), ``sasr`` (the
SaSR module as the authors' public code computes it), ``model`` (the networks and the four-term loss),
``data`` (data dirs, batching, negatives), ``metrics`` (per-type accuracy, chance level, bar chart),
``official`` (checkpoints of the public code), ``video`` (on-the-fly features for predict). Recipes (runs
that own an output directory): ``recipes.train``, ``recipes.grounding``, ``recipes.evaluate``. Nothing
heavy is imported until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "ModelConfig": "sasrnet.config", "TrainConfig": "sasrnet.config", "GroundingConfig": "sasrnet.config",
    "EvalConfig": "sasrnet.config",
    "model_config": "sasrnet.config", "build_model": "sasrnet.model", "compute_loss": "sasrnet.model",
    "load_official": "sasrnet.official", "official_outputs": "sasrnet.official",
    "train": "sasrnet.recipes.train", "pretrain_grounding": "sasrnet.recipes.grounding",
    "evaluate": "sasrnet.recipes.evaluate", "predict": "sasrnet.recipes.evaluate",
    "load_trained": "sasrnet.recipes.evaluate",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:  # PEP 562: import torch-heavy modules on first use only
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'sasrnet' has no attribute {name!r}")
