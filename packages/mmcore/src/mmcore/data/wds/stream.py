"""Image–text tar shards read as a stream of batches, without holding the data (:class:`ShardStream`,
``open_wds_stream``; the shard layout and the sample rule: :mod:`mmcore.data.wds.layout`).

webdataset's ``DataPipeline``: shard list → this process's shards (``torch.distributed`` rank / world size
when initialised) → this DataLoader worker's shards → tar members, read sequentially → samples → decoded and
transformed in the worker (:class:`Decode`) → batched in the worker (:func:`collate`). The main process sees
only batches; at most the batches the DataLoader prefetches are in memory. Data problems travel as values in
the batch (:class:`Problems`), so the main process raises one :class:`~mmcore.errors.DataError` naming the
shard member (or, with ``skip_bad``, counts it) instead of a worker traceback.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from mmcore.data.checks import SKIP_HINT
from mmcore.data.wds.layout import class_info, meta_dir, parse_sample, resolve_shards, shard_name
from mmcore.errors import DataError, MMError
from mmcore.io import safe_join


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of ``torch.distributed`` when initialised, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _decode_image(data: bytes, where: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    from mmcore.errors import ImageReadError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(where, f"cannot read image ({e})") from None


class Problems:
    """Collects what webdataset's stages report (unreadable or truncated shards) in the worker, for
    the decode stage to pass on as values (one per shard: a truncated shard reports its damaged
    member, then its missing header); always tells webdataset to continue with the next shard."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.seen: set[str] = set()

    def __call__(self, exn: Exception) -> bool:
        url = _shard_of(exn.args)
        if url not in self.seen:
            self.seen.add(url)
            first = str(exn.args[0]).split(" @ ")[0] if exn.args else type(exn).__name__
            self.items.append((url, f"truncated or corrupt tar ({first})"))
        return True

    def drain(self) -> Iterator[dict[str, Any]]:
        while self.items:
            where, problem = self.items.pop(0)
            yield {"problem": (where, problem, False)}


def _shard_of(args: tuple[Any, ...]) -> str:
    """The shard an exception from webdataset's tar stages is about: its url argument, the name of
    its stream argument, or the stream named in its message ("... @ <_io.BufferedReader name='...'>")."""
    for a in reversed(args):
        name = a if isinstance(a, str) else getattr(a, "name", None)
        if isinstance(name, str) and name.endswith((".tar", ".gz", ".tgz")):
            return name
    found = re.search(r"name='([^']+)'", str(args[0])) if args else None
    return found.group(1) if found else "shard"


def _by_rank(src: Iterable[Any], rank: int, world: int) -> Iterator[Any]:
    yield from islice(src, rank, None, world)


class Decode:
    """Worker stage: webdataset samples → ``{"id", "image", "caption", "label"}`` or ``{"problem"}``."""

    def __init__(self, transform: Callable[[Any], Any] | None, problems: Problems, n_classes: int | None):
        self.transform = transform
        self.problems = problems
        self.n_classes = n_classes

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in src:
            yield from self.problems.drain()
            yield self.one(sample)
        yield from self.problems.drain()

    def one(self, sample: dict[str, Any]) -> dict[str, Any]:
        from mmcore.data.records import to_tensor
        from mmcore.errors import ImageReadError

        url, key = str(sample["__url__"]), str(sample["__key__"])
        try:
            safe_join(Path(url).parent, key)
        except DataError as e:
            return {"problem": (url, e.problem, True)}
        parts = {k: v for k, v in sample.items() if not k.startswith("__")}
        parsed = parse_sample(key, parts, url, self.n_classes)
        if isinstance(parsed, tuple):
            return {"problem": (*parsed, False)}
        try:
            img = _decode_image(parts[parsed.image_ext], f"{url}:{key}.{parsed.image_ext}")
        except ImageReadError as e:
            return {"problem": (str(e.path), e.problem, False)}
        image = self.transform(img) if self.transform is not None else to_tensor(img)
        label = -1 if parsed.label is None else parsed.label
        return {"id": f"{shard_name(url)}/{key}", "image": image, "caption": parsed.caption, "label": label}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    good = [it for it in items if "problem" not in it]
    return {
        "image": torch.stack([it["image"] for it in good]) if good else torch.empty(0),
        "caption": [it["caption"] for it in good],
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "id": [it["id"] for it in good],
        "problems": [it["problem"] for it in items if "problem" in it],
    }


@dataclass
class ShardStream:
    """The shards of one split, read as a stream of batches (see the module docstring).

    ``skip_bad``: unreadable samples are counted in :attr:`skipped` instead of raising.
    ``limit``: at most this many samples over all processes (each process takes its share, the
    first ones its stream yields)."""

    shards: list[Path]
    split: str = "train"
    name: str = "wds"
    classnames: list[str] | None = None
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])
    skip_bad: bool = False
    limit: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    skipped: int = 0

    def pipeline(self, transform: Callable[[Any], Any] | None, batch_size: int, *,
                 rank: int | None = None, world: int | None = None) -> Any:
        """The webdataset ``DataPipeline`` (an ``IterableDataset`` yielding collated batches) of this
        process's shards; rank / world default to :func:`rank_and_world`."""
        import webdataset as wds

        if rank is None or world is None:
            rank, world = rank_and_world()
        problems = Problems()
        return wds.DataPipeline(
            wds.SimpleShardList([str(s) for s in self.shards]),
            partial(_by_rank, rank=rank, world=world),
            wds.split_by_worker,
            wds.tarfile_to_samples(handler=problems),
            Decode(transform, problems, len(self.classnames) if self.classnames else None),
            wds.batched(batch_size, collation_fn=collate, partial=True),
        )

    def loader(self, transform: Callable[[Any], Any] | None, batch_size: int = 256, *,
               num_workers: int | None = None, pin_memory: bool = False) -> Any:
        """A DataLoader over :meth:`pipeline` (batches are made in the workers)."""
        import torch

        from mmcore.data.loading import default_num_workers, loader_generator

        workers = default_num_workers() if num_workers is None else num_workers
        rank, world = rank_and_world()
        mine = len(self.shards[rank::world])
        workers = max(0, min(workers, mine))  # a worker without shards would only cost a process
        return torch.utils.data.DataLoader(
            self.pipeline(transform, batch_size, rank=rank, world=world), batch_size=None,
            num_workers=workers, pin_memory=pin_memory, persistent_workers=False, generator=loader_generator(),
        )

    def batches(self, transform: Callable[[Any], Any] | None, batch_size: int = 256, *,
                num_workers: int | None = None, pin_memory: bool = False) -> Iterator[dict[str, Any]]:
        """This process's batches ``{"image": [B,3,H,W], "caption": [B], "label": [B] (-1: none),
        "id": [B]}``; raises :class:`DataError` on the first unreadable sample unless ``skip_bad``."""
        if batch_size < 1:
            raise MMError(f"batch_size must be at least 1, got {batch_size}")
        self.skipped = 0
        budget = None
        if self.limit is not None:
            rank, world = rank_and_world()
            budget = self.limit // world + (1 if rank < self.limit % world else 0)
        if budget == 0:
            return
        for batch in self.loader(transform, batch_size, num_workers=num_workers, pin_memory=pin_memory):
            for where, problem, fatal in batch.pop("problems"):
                if fatal or not self.skip_bad:
                    raise DataError(where, problem + ("" if fatal else SKIP_HINT))
                self.skipped += 1
            if not batch["id"]:
                continue
            if budget is not None and len(batch["id"]) >= budget:
                yield {k: v[:budget] for k, v in batch.items()}
                return
            if budget is not None:
                budget -= len(batch["id"])
            yield batch


def open_wds_stream(root: str | Path, split: str = "train", *, skip_bad: bool = False,
                    limit: int | None = None) -> ShardStream:
    """The :class:`ShardStream` of ``split`` under ``root`` (see :func:`resolve_shards`)."""
    if limit is not None and limit < 0:
        raise MMError(f"limit must be positive, got {limit}")
    shards, how = resolve_shards(root, split)
    classnames, templates = class_info(meta_dir(root, shards))
    return ShardStream(shards=shards, split=split, classnames=classnames, templates=templates,
                       skip_bad=skip_bad, limit=limit or None, attrs={"root": str(root), "shards_from": how})


__all__ = ["Decode", "Problems", "ShardStream", "collate", "open_wds_stream", "rank_and_world"]
