"""The original model's metrics (a run's ``before`` block) computed once and reused: by every run and every
method of `mm unlearn run` / `compare` on the same weights, data, forget set, evaluation settings and seed.

The key names exactly those inputs: the content of the weights and model config files, the data and split
settings of the config and the record ids, captions and labels of each part of the split, the evaluation
settings, the device type and :data:`EVAL_VERSION`. Random weights (an architecture name without pretrained
weights) are never cached: there is no weights file to name them by."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mmcore.io import JsonCache, file_fingerprint, stable_hash

from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit

# Bump when evaluate_split / forget_score change what they compute, so older entries stop matching.
EVAL_VERSION = 3
# UnlearnConfig fields the data, the split and the evaluation depend on (the unlearning settings do not
# touch the original model's metrics). unlearn_templates: the default evaluation templates are the dataset's
# templates not chosen for unlearning.
DATA_FIELDS = ("dataset", "data_root", "caption_file", "n_train", "n_test", "data_seed", "limit", "test_split",
               "holdout_fraction", "skip_bad", "forget", "seed", "shapes_classes")
EVAL_FIELDS = ("eval_templates", "unlearn_templates", "eval_batch_size", "retrieval_max_pairs", "mia_max_samples",
               "eval_max_samples")
_MODEL_FILES = ("model.safetensors", "clip_config.json", "config.json", "open_clip_config.json")


def model_identity(cfg: UnlearnConfig) -> dict[str, Any] | None:
    """What names the weights: the model directory's files by content, a pretrained checkpoint file by
    content, an open_clip pretrained tag by name; None for random weights."""
    model = Path(cfg.model)
    if model.is_dir():
        files = {f: file_fingerprint(model / f) for f in _MODEL_FILES if (model / f).is_file()}
        return {"dir_files": files} if "model.safetensors" in files or len(files) > 1 else None
    if cfg.pretrained:
        pre = Path(cfg.pretrained)
        return {"name": cfg.model, "pretrained": file_fingerprint(pre) if pre.is_file() else cfg.pretrained}
    return None


def _part(data: Any) -> str:
    return stable_hash([[r.id, r.label, list(r.captions)] for r in data.records])


def before_key(cfg: UnlearnConfig, split: ForgetSplit, device: Any) -> dict[str, Any] | None:
    """The cache key of the ``before`` metrics of ``cfg`` on ``split`` (None: not cacheable)."""
    ident = model_identity(cfg)
    if ident is None:
        return None
    d = dataclasses.asdict(cfg)
    rl = cfg.relearn
    return {
        "what": "cliperase before-metrics", "eval_version": EVAL_VERSION,
        "model": ident,
        "data": {k: d[k] for k in DATA_FIELDS},
        "split": {k: _part(getattr(split, k)) for k in ("forget", "retain", "test_forget", "test_retain")},
        "eval": {k: d[k] for k in EVAL_FIELDS},
        "relearn_probe": {"eval_samples": rl.eval_samples} if rl.enabled else None,
        "precision": cfg.accelerator.mixed_precision,
        "device": str(getattr(device, "type", device)),
    }


def before_cache(cache_dir: str | Path | None) -> JsonCache:
    return JsonCache(None if cache_dir is None else Path(cache_dir) / "unlearn-before")
