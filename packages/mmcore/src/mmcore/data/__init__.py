"""Datasets: image–text records and loaders (synthetic shapes, CIFAR-100, Flickr30K, CC12M json/wds).

Submodules are imported on demand; the names below are the common entry points.
"""

from mmcore.data.records import ImageTextData, ImageTextDataset, ImageTextRecord

__all__ = ["ImageTextData", "ImageTextDataset", "ImageTextRecord", "load_image_text"]


def load_image_text(name: str, root=None, split: str = "train", **kw) -> ImageTextData:
    """See :func:`mmcore.data.registry.load_image_text`."""
    from mmcore.data.registry import load_image_text as _load

    return _load(name, root, split, **kw)
