"""One entry point for every image–text dataset: ``load_image_text(name, root, split, **kw)``, and
``open_image_text_stream`` for the datasets read as a stream of batches (:data:`STREAMED_DATASETS`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmcore.data.records import ImageTextData
from mmcore.errors import MMError

_SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}
_SHAPES_DEFAULT_N = {"train": 10_000, "val": 2_000, "test": 2_000}


def _shapes(
    root: Path | None, split: str, *, seed: int = 0, n: int | None = None, **kw: Any
) -> ImageTextData:
    """Synthetic shapes; each split draws from its own seed (``seed * 3 + split``), so splits are
    disjoint images and a given (seed, split) always gives the same data."""
    from mmcore.data.shapes import make_shapes

    if split not in _SPLIT_OFFSETS:
        raise MMError(f"shapes: unknown split {split!r}; choose one of {', '.join(_SPLIT_OFFSETS)}")
    n = _SHAPES_DEFAULT_N[split] if n is None else n
    return make_shapes(n, seed * 3 + _SPLIT_OFFSETS[split], **kw)


def _needs_root(name: str, fn: Callable[..., ImageTextData]) -> Callable[..., ImageTextData]:
    def load(root: Path | None, split: str, **kw: Any) -> ImageTextData:
        if root is None:
            raise MMError(f"dataset {name!r} needs a data root (--data-root PATH)")
        return fn(root, split, **kw)

    return load


def _real(attr: str, module: str = "image_text") -> Callable[..., ImageTextData]:
    def call(root: Path, split: str, **kw: Any) -> ImageTextData:
        import importlib

        return getattr(importlib.import_module(f"mmcore.data.{module}"), attr)(root, split, **kw)

    return call


_LOADERS: dict[str, Callable[..., ImageTextData]] = {
    "shapes": _shapes,
    "cifar100": _needs_root("cifar100", _real("load_cifar100")),
    "flickr30k": _needs_root("flickr30k", _real("load_flickr30k")),
    "cc12m": _needs_root("cc12m", _real("load_cc12m_json", "cc12m")),
    "wds": _needs_root("wds", _real("load_wds", "wds.records")),
}

IMAGE_TEXT_DATASETS: tuple[str, ...] = tuple(_LOADERS)
#: Datasets that :func:`open_image_text_stream` reads as a stream (decoded in DataLoader workers).
STREAMED_DATASETS: tuple[str, ...] = ("wds",)
#: Datasets whose images are arrays in memory (nothing unreadable): ``skip_bad`` is accepted and ignored.
IN_MEMORY_DATASETS: tuple[str, ...] = ("shapes", "cifar100")


def load_image_text(
    name: str, root: str | Path | None = None, split: str = "train", **kw: Any
) -> ImageTextData:
    """Load image–text dataset ``name`` (one of :data:`IMAGE_TEXT_DATASETS`).

    ``shapes`` ignores ``root`` and takes ``n``, ``seed`` and :func:`~mmcore.data.shapes.make_shapes`
    options; the real datasets read ``root`` and take their loader's options (``skip_bad``,
    ``limit``, ``download`` for cifar100, ``caption_file`` for flickr30k, ...). ``caption_file="auto"``
    is accepted (and ignored) for every dataset, ``skip_bad`` for the in-memory ones too.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _LOADERS:
        raise MMError(f"unknown image-text dataset {name!r}; known: {', '.join(IMAGE_TEXT_DATASETS)}")
    # caption_file (flickr30k's choice between its caption files) may be passed for any dataset, so
    # configs can carry it; anything but "auto" for another dataset is a mistake.
    caption_file = kw.pop("caption_file", "auto")
    if key == "flickr30k":
        kw["caption_file"] = caption_file
    elif caption_file != "auto":
        raise MMError(f"caption file {caption_file!r} applies to flickr30k only, not to dataset {name!r}")
    # skip_bad too: the in-memory datasets have no unreadable items to skip
    if key in IN_MEMORY_DATASETS:
        kw.pop("skip_bad", None)
    try:
        return _LOADERS[key](None if root is None else Path(root), split, **kw)
    except TypeError as e:
        # A misspelt keyword option is a user error, not a crash.
        if "unexpected keyword argument" in str(e):
            raise MMError(f"dataset {name!r}: {e}") from None
        raise


def open_image_text_stream(
    name: str, root: str | Path | None, split: str = "train", *, skip_bad: bool = False,
    limit: int | None = None, caption_file: str = "auto",
) -> Any:
    """A :class:`~mmcore.data.wds.stream.ShardStream` over dataset ``name`` (one of
    :data:`STREAMED_DATASETS`): batches decoded in DataLoader workers, nothing else held."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in STREAMED_DATASETS:
        raise MMError(f"dataset {name!r} is not read as a stream; streamed: {', '.join(STREAMED_DATASETS)}")
    if root is None:
        raise MMError(f"dataset {name!r} needs a data root (--data-root PATH)")
    if caption_file != "auto":
        raise MMError(f"caption file {caption_file!r} applies to flickr30k only, not to dataset {name!r}")
    from mmcore.data.wds.stream import open_wds_stream

    return open_wds_stream(root, split, skip_bad=skip_bad, limit=limit)
