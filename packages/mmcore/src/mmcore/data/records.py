"""Image–text records: the common in-memory form every image–text loader returns.

A record holds either an in-memory image (synthetic data) or a path to an image file (real data),
one or more captions, and an optional class label. :class:`ImageTextDataset` turns records into
``{"image", "text", "label", "index"}`` samples for training and evaluation.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from mmcore.errors import DataError, ImageReadError

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class ImageTextRecord:
    """One image with its captions. The image is in memory (``image``, HxWx3 uint8: synthetic data
    and CIFAR), a file (``path``: image folders), encoded bytes (``image_bytes``) or a member of an
    uncompressed tar shard (``tar_member`` = (shard path, data offset, size): read with one seek when
    loaded); for the last two ``attrs["source"]`` names the shard member for error messages."""

    id: str
    captions: list[str]
    label: int | None = None
    image: np.ndarray | None = None
    path: Path | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    image_bytes: bytes | None = field(default=None, repr=False)
    tar_member: tuple[str, int, int] | None = field(default=None, repr=False)

    def _member_bytes(self) -> bytes:
        shard, offset, size = self.tar_member  # type: ignore[misc]
        where = self.attrs.get("source", shard)
        try:
            with open(shard, "rb") as f:
                f.seek(offset)
                data = f.read(size)
        except OSError as e:
            raise ImageReadError(where, f"cannot read the shard ({e})") from None
        if len(data) != size:
            raise ImageReadError(where, f"shard truncated: {len(data)} of {size} image bytes")
        return data

    def load_image(self) -> Image.Image:
        """The image as an RGB PIL image; :class:`~mmcore.errors.ImageReadError` (a :class:`DataError`)
        naming the file if missing or corrupt."""
        from PIL import Image, UnidentifiedImageError

        if self.image is not None:
            return Image.fromarray(np.asarray(self.image, dtype=np.uint8)).convert("RGB")
        if self.image_bytes is not None or self.tar_member is not None:
            data = self.image_bytes if self.image_bytes is not None else self._member_bytes()
            source: Any = io.BytesIO(data)
            where = self.attrs.get("source", self.id)
        elif self.path is not None:
            path = Path(self.path)
            if not path.is_file():
                raise ImageReadError(path, f"image file not found (record {self.id!r})")
            source, where = path, path
        else:
            raise DataError(None, f"record {self.id!r} has no image (no array, path, bytes or tar member)")
        try:
            with Image.open(source) as im:
                im.load()  # decode now so truncated files fail here, not later in a worker
                return im.convert("RGB")
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
            raise ImageReadError(where, f"cannot read image ({e})") from None


@dataclass
class ImageTextData:
    """A named image–text dataset. ``templates`` are prompt templates with a ``{}`` placeholder for a
    class name; ``skipped`` counts unreadable items a loader dropped with ``skip_bad=True``."""

    name: str
    records: list[ImageTextRecord]
    classnames: list[str] | None = None
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])
    skipped: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, indices: list[int] | range, name: str | None = None) -> ImageTextData:
        """A copy holding only ``records[i]`` for ``i`` in ``indices`` (records are shared, not copied)."""
        return ImageTextData(
            name=name or self.name,
            records=[self.records[i] for i in indices],
            classnames=self.classnames,
            templates=list(self.templates),
            skipped=self.skipped,
            attrs=dict(self.attrs),
        )

    def drop_unreadable(self) -> tuple[ImageTextData, list[str]]:
        """A copy without the records whose image file or bytes cannot be decoded in full (a loader's
        ``skip_bad`` only checks headers: a truncated JPEG passes it), with ``skipped`` counting them
        too; and the problems found. Decodes every file-backed image once (in-memory arrays are kept
        unchecked)."""
        keep: list[int] = []
        problems: list[str] = []
        for i, r in enumerate(self.records):
            if r.image is None:
                try:
                    r.load_image()
                except ImageReadError as e:
                    problems.append(str(e))
                    continue
            keep.append(i)
        out = self.subset(keep)
        out.skipped = self.skipped + len(problems)
        return out, problems

    def texts(self) -> tuple[list[str], list[int]]:
        """All captions flattened, with the index of each caption's record (for retrieval)."""
        texts: list[str] = []
        owner: list[int] = []
        for i, r in enumerate(self.records):
            texts.extend(r.captions)
            owner.extend([i] * len(r.captions))
        return texts, owner


class ImageTextDataset(torch.utils.data.Dataset):
    """Records → ``dict(image=Tensor, text=str, label=int (-1 if None), index=int)``.

    ``caption="random"`` picks one caption per item; the pick depends only on (seed, index, epoch),
    so it is identical across workers, processes and resumed runs. Call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        records: list[ImageTextRecord] | ImageTextData,
        transform: Callable[[Any], torch.Tensor] | None = None,
        caption: Literal["random", "first"] = "random",
        seed: int = 0,
    ):
        if caption not in ("random", "first"):
            raise ValueError(f"caption must be 'random' or 'first', got {caption!r}")
        self.records = records.records if isinstance(records, ImageTextData) else list(records)
        self.transform = transform
        self.caption = caption
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def caption_for(self, index: int) -> str:
        caps = self.records[index].captions
        if not caps:
            raise DataError(None, f"record {self.records[index].id!r} has no captions")
        if self.caption == "first" or len(caps) == 1:
            return caps[0]
        # A fresh RNG keyed on (seed, epoch, index): no shared state, so workers agree.
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return caps[rng.randrange(len(caps))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        img = rec.load_image()
        image = self.transform(img) if self.transform is not None else to_tensor(img)
        return {
            "image": image,
            "text": self.caption_for(index),
            "label": -1 if rec.label is None else int(rec.label),
            "index": index,
        }


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL → float CHW tensor in [0, 1] (used when no transform is given)."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
