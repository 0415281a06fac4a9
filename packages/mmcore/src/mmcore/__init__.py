"""mmcore: the shared core of the monorepo (encoders, image-text and AVQA data, evaluation, accelerate glue,
checkpoint I/O, typed configs).

    import mmcore

    bundle = mmcore.load_clip("ViT-B-32", pretrained="openai")   # or a saved model dir, or "mm-tiny-clip"
    feats = bundle.model.encode_text(bundle.tokenizer(["a photo of a dog"]))
    print(mmcore.count_parameters(bundle.model))

``import mmcore`` imports no torch; the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "load_clip": "mmcore.encoders.clip", "create_clip": "mmcore.encoders.clip", "save_clip": "mmcore.encoders.clip",
    "ClipBundle": "mmcore.encoders.clip", "count_parameters": "mmcore.checkpoint",
    "export_clip": "mmcore.encoders.export",
    "ImageTextData": "mmcore.data.records", "ImageTextRecord": "mmcore.data.records",
    "resolve_config": "mmcore.config", "MMError": "mmcore.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:  # PEP 562: torch-heavy modules load on first use only
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmcore' has no attribute {name!r}")
