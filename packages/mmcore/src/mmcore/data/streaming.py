"""Image–text tar shards (webdataset, the layout img2dataset writes) read without holding the data.

A shard is a ``.tar`` whose members ``KEY.jpg`` (or png/webp/...), ``KEY.txt`` (the caption) and
optionally ``KEY.json`` (metadata) / ``KEY.cls`` (a class index) form one sample; img2dataset also
writes ``SHARD.parquet`` (key, caption, status, ...) and ``SHARD_stats.json`` next to each shard.
Two readers, one sample rule (:func:`_parse_sample`):

- :class:`ShardStream` (``open_wds_stream``): webdataset's ``DataPipeline`` — shard list → this
  process's shards (``torch.distributed`` rank / world size when initialised) → this DataLoader
  worker's shards → tar members, read sequentially → samples → decoded and transformed in the
  worker → batched in the worker. The main process sees only batches; at most the batches the
  DataLoader prefetches are in memory. Data problems travel as values in the batch, so the main
  process raises one :class:`~mmcore.errors.DataError` naming the shard member (or, with
  ``skip_bad``, counts it) instead of a worker traceback.
- :func:`load_wds` (what ``load_image_text("wds")`` returns, for callers that need random access:
  CLIP pretraining, unlearning): one record per sample holding its caption and the byte offset of
  its image member inside the shard (``ImageTextRecord.tar_member``); the image is read with one
  seek when the record is loaded. Memory: the captions and offsets, no image bytes.

Why webdataset's streaming pipeline and not its ``wids`` indexed reader: evaluation and the caption
pass visit every sample once, where sequential whole-shard reads are the fastest access (and the
only one on object stores or ``pipe:`` URLs), need no per-shard index or sample counts up front, and
read img2dataset's output as it is. wids is built for shuffled random access during training; the
random-access case here (:func:`load_wds`) needs only member offsets, which the stdlib ``tarfile``
gives without a second index format.

Splits (:func:`resolve_shards`): ``ROOT/SPLIT/*.tar`` (clip_benchmark's layout) if that folder exists,
else the shard names listed for SPLIT in ``ROOT/splits.json`` (:func:`write_shard_splits` writes one:
a held-out test split defined by shard names, reproducible from the names and a seed), else every
shard of ROOT (a .tar, a folder, a glob or a brace pattern such as ``data/{00000..00009}.tar``).
Zero-shot classes: ``classnames.txt`` (one per line) and ``zeroshot_classification_templates.txt``
in ROOT (clip_benchmark's names), labels from ``KEY.cls`` or ``json["label"]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from mmcore.data.image_text import IMAGE_EXTENSIONS
from mmcore.errors import DataError, MMError
from mmcore.io import read_json, safe_join, write_json

SPLITS_FILE = "splits.json"
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
# webdataset's key rule: the key is the path up to the first dot of the file name.
_WDS_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
_SKIP_HINT = " (pass skip_bad=True / --skip-bad to skip unreadable items)"


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


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of ``torch.distributed`` when initialised, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------- shards and splits


def shard_paths(root: str | Path) -> list[Path]:
    """The shards ``root`` names: a .tar file, a folder of them, a glob or a brace pattern."""
    text = str(root)
    if "{" in text and not Path(root).exists():
        import braceexpand

        shards = [Path(p) for p in braceexpand.braceexpand(text)]
        missing = [p for p in shards if not p.is_file()]
        if missing:
            raise DataError(missing[0], f"shard not found ({len(missing)} of {len(shards)} in {text!r} missing)")
        return shards
    root = Path(root)
    if root.is_file():
        return [root]
    if root.is_dir():
        shards = sorted(root.glob("*.tar")) + sorted(root.glob("*.tar.gz")) + sorted(root.glob("*.tgz"))
        if not shards:
            raise DataError(root, "no *.tar shards in this folder")
        return shards
    shards = sorted(root.parent.glob(root.name))
    if not shards:
        raise DataError(root, "no tar shards found (give a .tar file, a folder of them, a glob or a brace pattern)")
    return shards


def shard_name(shard: str | Path) -> str:
    """A shard's name in ids and split files: the file name without .tar / .tar.gz / .tgz."""
    name = Path(shard).name
    for ext in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(shard).stem


def split_shards(shards: Sequence[str | Path], test_fraction: float = 0.1, seed: int = 0) -> dict[str, list[str]]:
    """A held-out split by shard: ``{"train": names, "test": names}`` (sorted shard names).

    The test shards are the ``ceil(test_fraction * n)`` shards (at least one, at most n - 1) with the
    smallest hash of ``(seed, name)``: the same names and seed always give the same split, and adding
    shards moves no existing shard from one side to the other unless it changes the test count."""
    if not 0.0 < test_fraction < 1.0:
        raise MMError(f"test_fraction must be in (0, 1), got {test_fraction}")
    names = sorted({shard_name(s) for s in shards})
    if len(names) < 2:
        raise MMError(f"a split by shards needs at least 2 shards, got {len(names)}")
    k = min(len(names) - 1, max(1, math.ceil(test_fraction * len(names))))

    def rank(name: str) -> bytes:
        return hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()

    test = set(sorted(names, key=rank)[:k])
    return {"train": [n for n in names if n not in test], "test": [n for n in names if n in test]}


def write_shard_splits(
    root: str | Path, test_fraction: float = 0.1, seed: int = 0, *, path: str | Path | None = None
) -> Path:
    """Write ``splits.json`` (default ``ROOT/splits.json``) for the shards in ROOT: the split of
    :func:`split_shards` plus how it was made. :func:`resolve_shards` then reads splits from it."""
    shards = shard_paths(root)
    splits = split_shards(shards, test_fraction, seed)
    target = Path(path) if path is not None else Path(root) / SPLITS_FILE
    return write_json(target, {**splits, "rule": {"test_fraction": test_fraction, "seed": seed,
                                                  "by": "smallest blake2b(seed:name) shard names"}})


def resolve_shards(root: str | Path, split: str) -> tuple[list[Path], str]:
    """The shards of ``split`` under ``root`` and how they were chosen (see the module docstring)."""
    root_p = Path(root)
    if root_p.is_dir():
        sub = root_p / split
        if sub.is_dir() and any(sub.glob("*.tar*")):
            return shard_paths(sub), f"folder {sub}"
        splits_file = root_p / SPLITS_FILE
        if splits_file.is_file():
            spec = read_json(splits_file)
            if not isinstance(spec, dict) or not all(
                isinstance(v, list) for k, v in spec.items() if k != "rule"
            ):
                raise DataError(splits_file, 'expected {"train": [shard names], "test": [...], ...}')
            if split not in spec or split == "rule":
                if split == "all":
                    return shard_paths(root_p), "all shards"
                known = ", ".join(k for k in spec if k != "rule")
                raise DataError(splits_file, f"no split {split!r} (has {known}, or use split 'all')")
            by_name = {shard_name(p): p for p in shard_paths(root_p)}
            missing = [n for n in spec[split] if n not in by_name]
            if missing:
                raise DataError(splits_file, f"split {split!r} names shards not in {root_p}: {missing[:3]}")
            return [by_name[n] for n in spec[split]], f"{splits_file} [{split}]"
    return shard_paths(root), "all shards"


def _meta_dir(root: str | Path, shards: Sequence[Path]) -> Path:
    root_p = Path(root)
    if root_p.is_dir():
        return root_p
    return shards[0].parent if shards else root_p.parent


def _read_lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read ({e})") from None
    return [ln for ln in lines if ln]


def _class_info(meta: Path) -> tuple[list[str] | None, list[str]]:
    classnames = _read_lines(meta / CLASSNAMES_FILE)
    templates = _read_lines(meta / TEMPLATES_FILE) or ["a photo of a {}."]
    return classnames, templates


# ---------------------------------------------------------------- one sample


@dataclass
class _Parsed:
    caption: str
    label: int | None
    meta: dict[str, Any]
    image_ext: str


def _parse_sample(key: str, parts: dict[str, bytes], shard: str, n_classes: int | None) -> _Parsed | tuple[str, str]:
    """Caption (``.txt``, else ``json["caption"]`` / ``json["text"]``), label (``.cls``, else
    ``json["label"]``; only with class names), metadata and image extension of one sample, or
    ``(where, problem)``."""
    meta: dict[str, Any] = {}
    if "json" in parts:
        try:
            loaded = json.loads(parts["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"{shard}:{key}.json", f"malformed JSON ({e})"
        meta = loaded if isinstance(loaded, dict) else {}
    caption = None
    if "txt" in parts:
        try:
            caption = parts["txt"].decode("utf-8").strip()
        except UnicodeDecodeError:
            return f"{shard}:{key}.txt", "caption is not UTF-8 text"
    else:
        caption = meta.get("caption") or meta.get("text")
    image_ext = next((e for e in IMAGE_EXTENSIONS if e in parts), None)
    if image_ext is None or not caption:
        return shard, f"sample {key!r} lacks an image ({'/'.join(IMAGE_EXTENSIONS)}) or a caption (.txt)"
    label = None
    if n_classes is not None:
        raw: Any = parts["cls"].decode("utf-8", "replace").strip() if "cls" in parts else meta.get("label")
        if raw is not None:
            try:
                label = int(raw)
            except (TypeError, ValueError):
                return f"{shard}:{key}", f"class label {raw!r} is not a whole number"
            if not 0 <= label < n_classes:
                return f"{shard}:{key}", f"class label {label} is outside the {n_classes} classes of {CLASSNAMES_FILE}"
    return _Parsed(str(caption), label, meta, image_ext)


def _decode_image(data: bytes, where: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    from mmcore.errors import ImageReadError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(where, f"cannot read image ({e})") from None


# ---------------------------------------------------------------- the streaming pipeline


class _Problems:
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


class _Decode:
    """Worker stage: webdataset samples → ``{"id", "image", "caption", "label"}`` or ``{"problem"}``."""

    def __init__(self, transform: Callable[[Any], Any] | None, problems: _Problems, n_classes: int | None):
        self.transform = transform
        self.problems = problems
        self.n_classes = n_classes

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in src:
            yield from self.problems.drain()
            yield self.one(sample)
        yield from self.problems.drain()

    def one(self, sample: dict[str, Any]) -> dict[str, Any]:
        from mmcore.data.records import _to_tensor
        from mmcore.errors import ImageReadError

        url, key = str(sample["__url__"]), str(sample["__key__"])
        try:
            safe_join(Path(url).parent, key)
        except DataError as e:
            return {"problem": (url, e.problem, True)}
        parts = {k: v for k, v in sample.items() if not k.startswith("__")}
        parsed = _parse_sample(key, parts, url, self.n_classes)
        if isinstance(parsed, tuple):
            return {"problem": (*parsed, False)}
        try:
            img = _decode_image(parts[parsed.image_ext], f"{url}:{key}.{parsed.image_ext}")
        except ImageReadError as e:
            return {"problem": (str(e.path), e.problem, False)}
        image = self.transform(img) if self.transform is not None else _to_tensor(img)
        label = -1 if parsed.label is None else parsed.label
        return {"id": f"{shard_name(url)}/{key}", "image": image, "caption": parsed.caption, "label": label}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
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
        problems = _Problems()
        return wds.DataPipeline(
            wds.SimpleShardList([str(s) for s in self.shards]),
            partial(_by_rank, rank=rank, world=world),
            wds.split_by_worker,
            wds.tarfile_to_samples(handler=problems),
            _Decode(transform, problems, len(self.classnames) if self.classnames else None),
            wds.batched(batch_size, collation_fn=_collate, partial=True),
        )

    def loader(self, transform: Callable[[Any], Any] | None, batch_size: int = 256, *,
               num_workers: int | None = None, pin_memory: bool = False) -> Any:
        """A DataLoader over :meth:`pipeline` (batches are made in the workers)."""
        import torch

        from mmcore.data.loading import loader_generator

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
                    raise DataError(where, problem + ("" if fatal else _SKIP_HINT))
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
    classnames, templates = _class_info(_meta_dir(root, shards))
    return ShardStream(shards=shards, split=split, classnames=classnames, templates=templates,
                       skip_bad=skip_bad, limit=limit or None, attrs={"root": str(root), "shards_from": how})


def __getattr__(name: str) -> Any:
    # load_wds, load_wds_holdout and write_shards live in mmcore.data.wds_records (random access);
    # they stay importable from here.
    if name in ("load_wds", "load_wds_holdout", "write_shards"):
        from mmcore.data import wds_records

        return getattr(wds_records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLASSNAMES_FILE",
    "SPLITS_FILE",
    "TEMPLATES_FILE",
    "ShardStream",
    "default_num_workers",
    "open_wds_stream",
    "rank_and_world",
    "resolve_shards",
    "shard_name",
    "shard_paths",
    "split_shards",
    "write_shard_splits",
]
