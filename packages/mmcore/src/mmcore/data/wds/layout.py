"""The img2dataset layout of webdataset shards: which shards a root names, their names, splits, the class
and template files beside them, and the fields of one sample.

A shard is a ``.tar`` whose members ``KEY.jpg`` (or png/webp/...), ``KEY.txt`` (the caption) and
optionally ``KEY.json`` (metadata) / ``KEY.cls`` (a class index) form one sample (:data:`WDS_KEY`:
webdataset's key rule); img2dataset also writes ``SHARD.parquet`` (key, caption, status, ...) and
``SHARD_stats.json`` next to each shard. Both readers (:mod:`mmcore.data.wds.stream`,
:mod:`mmcore.data.wds.records`) read a sample by one rule, :func:`parse_sample`.

Splits (:func:`resolve_shards`): ``ROOT/SPLIT/*.tar`` (clip_benchmark's layout) if that folder exists,
else the shard names listed for SPLIT in ``ROOT/splits.json`` (:func:`write_shard_splits` writes one:
a held-out test split defined by shard names, reproducible from the names and a seed), else every
shard of ROOT (a .tar, a folder, a glob or a brace pattern such as ``data/{00000..00009}.tar``).
Zero-shot classes: ``classnames.txt`` (one per line) and ``zeroshot_classification_templates.txt``
in ROOT (clip_benchmark's names), labels from ``KEY.cls`` or ``json["label"]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.errors import DataError, MMError
from mmcore.io import read_json, write_json

SPLITS_FILE = "splits.json"
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
#: webdataset's key rule: the key is the path up to the first dot of the file name.
WDS_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


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


def meta_dir(root: str | Path, shards: Sequence[Path]) -> Path:
    """The folder holding ``classnames.txt`` / the templates file: ``root`` if a folder, else the shards' folder."""
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


def class_info(meta: Path) -> tuple[list[str] | None, list[str]]:
    """(class names or None, zero-shot templates) from the files in ``meta`` (:func:`meta_dir`)."""
    classnames = _read_lines(meta / CLASSNAMES_FILE)
    templates = _read_lines(meta / TEMPLATES_FILE) or ["a photo of a {}."]
    return classnames, templates


@dataclass
class ParsedSample:
    """One sample's fields (:func:`parse_sample`); the image stays in its member ``KEY.<image_ext>``."""

    caption: str
    label: int | None
    meta: dict[str, Any]
    image_ext: str


def parse_sample(key: str, parts: dict[str, bytes], shard: str, n_classes: int | None) -> ParsedSample | tuple[str, str]:
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
    return ParsedSample(str(caption), label, meta, image_ext)


__all__ = [
    "CLASSNAMES_FILE",
    "IMAGE_EXTENSIONS",
    "SPLITS_FILE",
    "TEMPLATES_FILE",
    "WDS_KEY",
    "ParsedSample",
    "class_info",
    "meta_dir",
    "parse_sample",
    "resolve_shards",
    "shard_name",
    "shard_paths",
    "split_shards",
    "write_shard_splits",
]
