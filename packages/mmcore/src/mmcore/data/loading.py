"""Image batches of records decoded in DataLoader workers, with nothing cached.

Every image path that reads records (evaluation, unlearning, SLUG, Retrain) asks for batches of
record indices and gets stacked, transformed image tensors: :func:`image_batches` runs a
``torch.utils.data.DataLoader`` over :class:`RecordImages` (a map-style dataset) with the index lists
as its ``batch_sampler``, so decoding and the transform happen in ``num_workers`` worker processes
ahead of use (the DataLoader's prefetch), and only those prefetched batches are in memory.
``num_workers=0`` decodes in the calling process, batch by batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from mmcore.data.records import ImageTextRecord, to_tensor
from mmcore.errors import MMError

#: Below this many images the default (``num_workers=None``) decodes in the calling process: starting
#: worker processes costs more than decoding a few hundred small images.
MIN_IMAGES_FOR_WORKERS = 512


def loader_generator(seed: int = 0) -> torch.Generator:
    """A DataLoader's own generator (its workers' base seed, its shuffle). Without one, every iteration over
    a DataLoader draws from the global RNG, so reading data (an evaluation in the middle of training, another
    worker count) would shift a model's later dropout draws."""
    return torch.Generator().manual_seed(seed)


def takes_arrays(transform: Any) -> bool:
    """mmcore's ``TensorPreprocess`` takes HxWx3 arrays directly, skipping a PIL round trip."""
    return type(transform).__name__ == "TensorPreprocess"


def load_transformed(rec: ImageTextRecord, transform: Callable[[Any], torch.Tensor] | None) -> torch.Tensor:
    """One record's image, read and transformed (no transform: float CHW in [0, 1])."""
    if rec.image is not None and takes_arrays(transform):
        return transform(rec.image)  # type: ignore[misc]
    img = rec.load_image()
    return transform(img) if transform is not None else to_tensor(img)


class RecordImages(torch.utils.data.Dataset):
    """``records[i]`` → its transformed image tensor (map-style, for DataLoader workers). A data
    problem is returned as a value (:class:`_Failed`) so the main process raises it as the same
    :class:`~mmcore.errors.DataError`, not as a worker traceback."""

    def __init__(self, records: Sequence[ImageTextRecord], transform: Callable[[Any], torch.Tensor] | None):
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Any:
        from mmcore.errors import DataError

        try:
            return load_transformed(self.records[index], self.transform)
        except DataError as e:
            return _Failed(type(e), e.path, e.problem)


class _Failed:
    def __init__(self, cls: type, path: Any, problem: str):
        self.cls, self.path, self.problem = cls, path, problem

    def error(self) -> Exception:
        return self.cls(self.path, self.problem)


def _stack(items: list[Any]) -> Any:
    bad = next((it for it in items if isinstance(it, _Failed)), None)
    return bad if bad is not None else torch.stack(items)


def default_num_workers() -> int:
    """DataLoader workers for decoding: ``MM_NUM_WORKERS`` if set, else the CPUs this process may
    use, shared among the processes of this node (``LOCAL_WORLD_SIZE``), minus one for the main
    process, at most 8 (2 CPUs, one process: 1 worker)."""
    env = os.environ.get("MM_NUM_WORKERS", "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise MMError(f"MM_NUM_WORKERS must be a whole number, got {env!r}") from None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, min(8, cpus // local - 1))


def resolve_workers(num_workers: int | None, n_images: int) -> int:
    """``num_workers``, or with None :func:`default_num_workers` (0 for fewer than
    :data:`MIN_IMAGES_FOR_WORKERS` images)."""
    if num_workers is not None:
        return max(0, int(num_workers))
    if n_images < MIN_IMAGES_FOR_WORKERS:
        return 0
    return default_num_workers()


def image_batches(
    records: Sequence[ImageTextRecord],
    transform: Callable[[Any], torch.Tensor] | None,
    batches: Iterable[Sequence[int]],
    *,
    num_workers: int | None = None,
    pin_memory: bool = False,
    n_images: int | None = None,
) -> Iterator[torch.Tensor]:
    """For each index list of ``batches``, the stacked images ``[len, 3, H, W]`` of those records, in
    order. ``n_images`` (the total, when ``batches`` is a generator) only informs the default worker
    count; by default in-memory arrays under mmcore's tensor transform are read in this process. Errors
    raised while reading an image (:class:`~mmcore.errors.ImageReadError`) reach the caller as themselves,
    from a worker too."""
    plan = [list(b) for b in batches]
    total = n_images if n_images is not None else sum(len(b) for b in plan)
    # Arrays in memory under a tensor transform: nothing to decode, and a default worker would only take a
    # core from the model (the tiny CLIP's evaluation ran 1.8x slower with one on 2 CPUs).
    here = num_workers is None and takes_arrays(transform) and all(records[i].image is not None for b in plan for i in b)
    workers = 0 if here else min(resolve_workers(num_workers, total), len(plan))
    if workers == 0:
        for b in plan:
            batch = torch.stack([load_transformed(records[i], transform) for i in b])
            yield batch.pin_memory() if pin_memory else batch
        return
    loader = torch.utils.data.DataLoader(
        RecordImages(records, transform), batch_sampler=plan, num_workers=workers,
        collate_fn=_stack, pin_memory=pin_memory, generator=loader_generator(),
    )
    for batch in loader:
        if isinstance(batch, _Failed):
            raise batch.error()
        yield batch


__all__ = ["MIN_IMAGES_FOR_WORKERS", "RecordImages", "default_num_workers", "image_batches", "load_transformed",
           "loader_generator", "resolve_workers", "takes_arrays"]
