"""What one unlearning step consumes: this process's images and texts and the global batch's texts, per
part ("f" forget, "r" retain), from records (``cliperase.trainer.RecordSteps``: batches indexed by (seed,
step)), from shard streams (:class:`StreamSteps`: D_r of a streamed split) or both (:class:`MergedSteps`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from mmcore.data.records import ImageTextData, ImageTextRecord


@dataclass
class StepBatch:
    """One step's inputs. ``images``: this process's images, the parts concatenated in part order;
    ``local[key]``: the texts of this process's images of that part, in that order; ``texts[key]``: the
    texts of the part's global batch in global order; ``back[key]``: indices putting the all-gathered rows
    (rank by rank) into global order, or None when the gathered order is the global order."""

    images: torch.Tensor
    local: dict[str, list[str]]
    texts: dict[str, list[str]]
    back: dict[str, torch.Tensor | None]


#: text_of(part key, part data, record, position key, step) -> the text paired with that image at that step
TextOf = Callable[[str, ImageTextData, ImageTextRecord, int, int], str]


def _record_of(batch: dict[str, Any], j: int) -> ImageTextRecord:
    label = int(batch["label"][j])
    return ImageTextRecord(id=batch["id"][j], captions=[batch["caption"][j]], label=None if label < 0 else label)


class StreamSteps:
    """Steps over a streamed split: per part, this process's endless shuffled batches of
    ``local_batch`` samples (:func:`mmcore.data.wds.shard_sampler.shuffled_shard_batches`); a sample's
    position key is its place in the global batch. The streams start at a seed derived from
    (``seed``, first step), so a resumed run draws a reproducible, but different, order."""

    def __init__(self, parts: dict[str, dict[str, Any]], transform: Any, text_of: TextOf, *, seed: int, rank: int,
                 world: int, num_workers: int | None, pin_memory: bool, skip_bad: bool):
        self.parts, self.transform, self.text_of = parts, transform, text_of
        self.seed, self.rank, self.world = seed, rank, world
        self.num_workers, self.pin_memory, self.skip_bad = num_workers, pin_memory, skip_bad

    def steps(self, start: int, end: int) -> Iterator[StepBatch]:
        from mmcore.data.wds.shard_sampler import shuffled_shard_batches

        streams = {
            key: shuffled_shard_batches(p["shards"], self.transform, p["local_batch"],
                                        seed=(self.seed * 1_000_003 + start) * 31 + ord(key), keep=p["keep"],
                                        n_classes=p["n_classes"], n_samples=p["n"], num_workers=self.num_workers,
                                        pin_memory=self.pin_memory, skip_bad=self.skip_bad, rank=self.rank,
                                        world=self.world)
            for key, p in self.parts.items()
        }
        for step in range(start, end):
            batches = {key: next(it) for key, it in streams.items()}
            local, texts = {}, {}
            for key, b in batches.items():
                data, lb = self.parts[key]["data"], self.parts[key]["local_batch"]
                local[key] = [self.text_of(key, data, _record_of(b, j), self.rank * lb + j, step)
                              for j in range(len(b["id"]))]
                texts[key] = _gather_texts(local[key], self.world)
            images = torch.cat([b["image"] for b in batches.values()])
            yield StepBatch(images, local, texts, dict.fromkeys(batches))


class MergedSteps:
    """Several sources side by side (D_f by index, D_r streamed): per step their parts in source order, the
    images concatenated in that order."""

    def __init__(self, *sources: Any):
        self.sources = sources

    def steps(self, start: int, end: int) -> Iterator[StepBatch]:
        for batches in zip(*(src.steps(start, end) for src in self.sources), strict=True):
            yield StepBatch(torch.cat([b.images for b in batches]),
                            {k: v for b in batches for k, v in b.local.items()},
                            {k: v for b in batches for k, v in b.texts.items()},
                            {k: v for b in batches for k, v in b.back.items()})


def _gather_texts(local: list[str], world: int) -> list[str]:
    """Every process's texts, rank by rank (the order of the all-gathered features)."""
    if world == 1:
        return list(local)
    from accelerate.utils import gather_object

    return list(gather_object(list(local)))


__all__ = ["MergedSteps", "StepBatch", "StreamSteps", "TextOf"]
