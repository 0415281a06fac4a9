"""The config of one CLIP evaluation (`mm clip eval`): which model, which data, how much of it.

    cfg = ClipEvalConfig(model="runs/clip", dataset="cifar100", data_root="~/data")
    metrics = evaluate_clip_config(cfg)          # zero-shot accuracy and retrieval Recall@K
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ClipEvalConfig:
    model: str | None = None  # saved model dir or open_clip name; None: the CLI's default (the cached tiny CLIP)
    pretrained: str | None = None  # open_clip pretrained tag or local checkpoint (with a model name)
    dataset: str = "shapes"  # shapes | cifar100 | flickr30k | cc12m | wds
    data_root: str | None = None
    split: str = "test"
    n: int | None = None  # shapes: images generated (None: 1000); real data: at most n records (None: all)
    seed: int = 0  # seed of the synthetic data
    batch_size: int = 256
    skip_bad: bool = False  # skip (and count) unreadable images and malformed annotation lines
    caption_file: str = "auto"  # flickr30k: auto | karpathy | csv


def evaluate_clip_config(cfg: ClipEvalConfig) -> dict[str, Any]:
    """:func:`mmcore.clip_train.evaluate_clip` on ``cfg`` (``cfg.model`` must be set)."""
    from mmcore.clip_train import evaluate_clip
    from mmcore.errors import ConfigError

    if cfg.model is None:
        raise ConfigError("ClipEvalConfig.model is not set: name a saved model dir or an open_clip model")
    return evaluate_clip(cfg.model, cfg.pretrained, cfg.dataset, data_root=cfg.data_root, split=cfg.split, n=cfg.n,
                         seed=cfg.seed, batch_size=cfg.batch_size, skip_bad=cfg.skip_bad, caption_file=cfg.caption_file)
