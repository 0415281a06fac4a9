"""Datasets: image–text records and loaders (synthetic shapes, CIFAR-100, Flickr30K, CC12M json/wds), found by
name through :mod:`mmcore.data.registry`.

Submodules are imported on demand (``import mmcore.data`` loads no torch); the names below are the common
entry points.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmcore.data.records import ImageTextData, ImageTextDataset, ImageTextRecord
    from mmcore.data.registry import (
        ImageTextDatasetSpec,
        image_text_datasets,
        load_image_text,
        register_image_text_dataset,
    )

_API = {
    "ImageTextData": "mmcore.data.records", "ImageTextDataset": "mmcore.data.records",
    "ImageTextRecord": "mmcore.data.records", "load_image_text": "mmcore.data.registry",
    "register_image_text_dataset": "mmcore.data.registry", "ImageTextDatasetSpec": "mmcore.data.registry",
    "image_text_datasets": "mmcore.data.registry",
}
__all__ = ["ImageTextData", "ImageTextDataset", "ImageTextDatasetSpec", "ImageTextRecord", "image_text_datasets",
           "load_image_text", "register_image_text_dataset"]


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmcore.data' has no attribute {name!r}")
