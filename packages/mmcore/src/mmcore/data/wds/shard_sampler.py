"""Endless, shuffled training batches from webdataset shards: for a loop that draws one batch per step
from a set too large to index (unlearning's retain set over CC12M-sized shards), holding nothing but a
shuffle buffer and the prefetched batches.

Each epoch visits the shards in a seeded order. This process takes every ``world``-th shard of it (with
fewer shards than processes: every shard, and every ``world``-th sample of each), each DataLoader worker
a share of those (webdataset's ``split_by_worker``). In the worker, samples pass an id filter (e.g. "not
a forget id"), a seeded shuffle buffer, decoding and the transform, and are batched: the main process
receives whole batches of exactly ``batch_size`` readable samples. The order is reproducible from
(seed, number of processes, number of workers): like open_clip's webdataset training, and unlike the
record-index batches of :func:`mmcore.distributed.global_batches`, it is not independent of the
worker count.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import count
from pathlib import Path
from typing import Any

from mmcore.data.checks import SKIP_HINT
from mmcore.data.wds.layout import shard_name
from mmcore.data.wds.stream import Decode, Problems, collate, rank_and_world
from mmcore.errors import DataError, MMError


def _worker_id() -> int:
    import torch

    info = torch.utils.data.get_worker_info()
    return info.id if info is not None else 0


class _EpochShards:
    """Endless ``{"url"}`` items: epoch ``e``'s seeded shard order, this process's share of it."""

    def __init__(self, shards: Sequence[str], seed: int, rank: int, world: int):
        self.shards, self.seed, self.rank, self.world = list(shards), seed, rank, world

    def __call__(self) -> Iterator[dict[str, str]]:  # a pipeline source stage
        for epoch in count():
            order = list(self.shards)
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            mine = order[self.rank :: self.world] if len(order) >= self.world else order
            for url in mine:
                yield {"url": url}


@dataclass(frozen=True)
class IdFilter:
    """Keeps a sample whose id (``SHARD/KEY``, as :func:`mmcore.data.wds.records.load_wds` names records)
    is in ``ids`` (``inside=True``) or not in it."""

    ids: frozenset[str]
    inside: bool

    def __call__(self, sample: dict[str, Any]) -> bool:
        return (f"{shard_name(sample['__url__'])}/{sample['__key__']}" in self.ids) == self.inside


def _select(src: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] | None,
            every: int, offset: int) -> Iterator[dict[str, Any]]:
    for i, sample in enumerate(src):
        if (every == 1 or i % every == offset) and (keep is None or keep(sample)):
            yield sample


def _shuffle(src: Iterable[Any], buffer: int, seed: int) -> Iterator[Any]:
    """A shuffle buffer seeded per worker (so two workers do not draw the same permutation)."""
    rng = random.Random(seed * 7919 + _worker_id())
    buf: list[Any] = []
    for item in src:
        buf.append(item)
        if len(buf) >= buffer:
            j = rng.randrange(len(buf))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


def _exact_batches(src: Iterable[dict[str, Any]], batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of exactly ``batch_size`` decoded samples; the problems met meanwhile travel with them."""
    good: list[dict[str, Any]] = []
    problems: list[Any] = []
    for item in src:
        if "problem" in item:
            problems.append(item["problem"])
            continue
        good.append(item)
        if len(good) == batch_size:
            batch = collate(good)
            batch["problems"] = problems
            yield batch
            good, problems = [], []


def shuffled_shard_batches(
    shards: Sequence[str | Path],
    transform: Callable[[Any], Any] | None,
    batch_size: int,
    *,
    seed: int,
    keep: IdFilter | None = None,
    n_classes: int | None = None,
    shuffle_buffer: int = 1000,
    n_samples: int | None = None,
    num_workers: int | None = None,
    pin_memory: bool = False,
    skip_bad: bool = False,
    rank: int | None = None,
    world: int | None = None,
) -> Iterator[dict[str, Any]]:
    """This process's endless batches ``{"image", "caption", "label" (-1: none), "id"}`` of ``batch_size``
    samples (see the module docstring). ``keep`` must let at least one sample of every shard through (the
    caller knows the per-shard counts: a worker whose shards hold none would never yield). An unreadable
    sample raises :class:`DataError` naming it, unless ``skip_bad`` (then it is skipped). ``n_samples``
    (how many samples pass ``keep``, when known) caps the shuffle buffer at one worker's share of an epoch,
    so a small set does not repeat a sample within a batch."""
    import torch
    import webdataset as wds

    from mmcore.data.loading import default_num_workers, loader_generator

    if batch_size < 1:
        raise MMError(f"batch_size must be at least 1, got {batch_size}")
    if not shards:
        raise MMError("no shards to draw training batches from")
    if rank is None or world is None:
        rank, world = rank_and_world()
    urls = [str(s) for s in shards]
    mine = len(urls[rank::world]) if len(urls) >= world else len(urls)
    workers = max(0, min(default_num_workers() if num_workers is None else num_workers, mine))
    per_sample = len(urls) < world  # too few shards to give each process its own
    if n_samples is not None:
        shuffle_buffer = max(1, min(shuffle_buffer, n_samples // (world * max(1, workers))))
    problems = Problems()
    pipeline = wds.DataPipeline(
        _EpochShards(urls, seed, rank, world),
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=problems),
        partial(_select, keep=keep, every=world if per_sample else 1, offset=rank),
        partial(_shuffle, buffer=shuffle_buffer, seed=seed),
        Decode(transform, problems, n_classes),
        partial(_exact_batches, batch_size=batch_size),
    )
    it = iter(torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                          generator=loader_generator(seed)))
    try:
        for batch in it:
            for where, problem, fatal in batch.pop("problems"):
                if fatal or not skip_bad:
                    raise DataError(where, problem + ("" if fatal else SKIP_HINT))
            yield batch
    finally:
        del it  # stop the workers when the stream is closed, not when a traceback holding it is dropped


__all__ = ["IdFilter", "shuffled_shard_batches"]
