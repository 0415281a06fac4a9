"""Split a dataset into the forget set D_f and the retain set D_r.

Four ways to name D_f (exactly one per run):

- class names (``classes``): every record whose label is one of them;
- a seeded random ``ratio`` of the classes (CIFAR-100 protocol: 3 %, 10 %, 20 %, 30 %);
- a caption ``keyword`` (whole word, case-insensitive; several alternatives separated by commas,
  e.g. ``"woman,women"``): an image is forgotten, with all its captions, if any caption matches;
- an ``ids_file`` of record ids, one per line.

The same rule splits the held-out test data into test-forget and test-retain parts (ids files apply
to the training data only, so all test data counts as test-retain then).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import ConfigError, DataError, MMError

from cliperase.config import ForgetSpec

if TYPE_CHECKING:
    from mmcore.data.wds.caption_pass import CaptionPass

#: The run-directory folder of the caption pass that finds a keyword's forget set over shards.
FORGET_PASS_DIR = "forget_pass"


@dataclass
class StreamedSets:
    """D_r of a streamed split (:func:`cliperase.streamed_split.load_streamed_split`; D_f is the split's
    ``forget`` records): the training shards holding retain samples, the forget ids that the stream leaves
    out, and the set sizes."""

    retain_shards: list[str]
    forget_ids: frozenset[str]
    n_forget: int
    n_retain: int
    n_classes: int | None


@dataclass
class ForgetSplit:
    """D_f and D_r (from the training split) and the held-out test split, divided the same way."""

    forget: ImageTextData
    retain: ImageTextData
    test_forget: ImageTextData
    test_retain: ImageTextData
    forget_classes: list[str] | None  # None for keyword / id forget sets
    description: str
    # D_r as a shard stream (cliperase.streamed_split); then ``retain`` holds a bounded evaluation sample of
    # it, not the set itself
    stream: StreamedSets | None = None

    def sizes(self) -> dict[str, int]:
        sizes = {
            "forget": len(self.forget),
            "retain": len(self.retain),
            "test": len(self.test_forget) + len(self.test_retain),
            "test_forget": len(self.test_forget),
            "test_retain": len(self.test_retain),
        }
        if self.stream is not None:
            sizes.update(retain=self.stream.n_retain, retain_eval_sample=len(self.retain))
        return sizes


def keyword_words(keyword: str) -> list[str]:
    """The alternatives of a keyword (commas separate them)."""
    return [w.strip() for w in keyword.split(",") if w.strip()]


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive regex for a keyword (commas separate alternatives)."""
    words = keyword_words(keyword)
    if not words:
        raise ConfigError(f"forget keyword {keyword!r} is empty")
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def record_matches_keyword(record: ImageTextRecord, pattern: re.Pattern[str]) -> bool:
    return any(pattern.search(c) for c in record.captions)


def resolve_forget_classes(data: ImageTextData, spec: ForgetSpec) -> list[str]:
    """The class names to forget (given, or drawn with ``spec.seed`` for a ratio)."""
    if not data.classnames:
        raise MMError(
            f"dataset {data.name!r} has no class labels; use --forget-keyword or --forget-ids instead of classes"
        )
    names = list(data.classnames)
    if spec.ratio is not None:
        k = max(1, round(spec.ratio * len(names)))
        if k >= len(names):
            raise ConfigError(f"forget ratio {spec.ratio} would forget all {len(names)} classes")
        return sorted(random.Random(spec.seed).sample(names, k), key=names.index)
    lower = {n.lower(): n for n in names}
    unknown = [c for c in spec.classes if c not in names and c.lower() not in lower]
    if unknown:
        raise MMError(
            f"unknown class(es) {', '.join(map(repr, unknown))} for dataset {data.name!r}; valid classes: "
            + ", ".join(names)
        )
    out = [c if c in names else lower[c.lower()] for c in spec.classes]
    return list(dict.fromkeys(out))


def read_ids_file(path: str | Path) -> list[str]:
    """Record ids, one per line; blank lines and ``#`` comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "forget-ids file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(path, "forget-ids file is not UTF-8 text") from None
    ids = [ln.split("#", 1)[0].strip() for ln in lines]
    return [i for i in ids if i]


def forget_mask(data: ImageTextData, spec: ForgetSpec, classes: list[str] | None = None) -> list[bool]:
    """For each record, whether it belongs to the forget set under ``spec``.

    ``classes`` (already resolved class names) is used for class and ratio specs."""
    if classes is not None:
        assert data.classnames is not None
        labels = {data.classnames.index(c) for c in classes}
        return [r.label is not None and r.label in labels for r in data.records]
    if spec.keyword is not None:
        pat = keyword_pattern(spec.keyword)
        return [record_matches_keyword(r, pat) for r in data.records]
    if spec.ids_file is not None:
        wanted = set(read_ids_file(spec.ids_file))
        return [r.id in wanted for r in data.records]
    raise ConfigError("no forget set given")


def stream_forget_ids(shards: list[str | Path], keyword: str, run_dir: str | Path) -> CaptionPass:
    """The forget ids of a keyword over webdataset shards, from one pass over their captions only
    (:func:`mmcore.data.wds.caption_pass.caption_pass`: the per-shard parquet or the .txt members, no image
    decoded), written to ``run_dir/forget_pass/`` (``shards.jsonl``: per-shard counts and ids; resumable)."""
    from mmcore.data.wds.caption_pass import caption_pass

    pat = keyword_pattern(keyword)
    return caption_pass(shards, lambda c: pat.search(c) is not None, Path(run_dir) / FORGET_PASS_DIR,
                        rule={"keyword": keyword, "match": "whole word, case-insensitive"},
                        desc=f"forget set: captions matching {keyword!r}")


def run_forget_ids(dataset: str, spec: ForgetSpec, train: ImageTextData, run_dir: str | Path | None) -> set[str] | None:
    """For a keyword over webdataset shards with a run directory: the forget ids from
    :func:`stream_forget_ids` over the training shards; otherwise None (the records are matched)."""
    if dataset.lower() != "wds" or spec.keyword is None or run_dir is None or "shard_paths" not in train.attrs:
        return None
    return set(stream_forget_ids(train.attrs["shard_paths"], spec.keyword, run_dir).ids)


def split_forget_retain(train: ImageTextData, test: ImageTextData | None, spec: ForgetSpec,
                        forget_ids: set[str] | None = None) -> ForgetSplit:
    """Split ``train`` into D_f / D_r and ``test`` into test-forget / test-retain.

    ``forget_ids``: the training forget set already found (by :func:`stream_forget_ids`, same rule);
    ``spec`` still splits the test data.

    Raises :class:`MMError` for an unknown class, an empty forget set, or a forget set that is the
    whole training set; :class:`DataError` for ids that are not in the dataset."""
    given = [bool(spec.classes), spec.keyword is not None, spec.ratio is not None, spec.ids_file is not None]
    if sum(given) != 1:
        raise ConfigError(f"give exactly one forget set (classes, keyword, ratio or ids file); got {sum(given)}")
    classes = resolve_forget_classes(train, spec) if (spec.classes or spec.ratio is not None) else None
    mask = [r.id in forget_ids for r in train.records] if forget_ids is not None else forget_mask(train, spec, classes)
    if spec.ids_file is not None:
        known = {r.id for r in train.records}
        unknown = [i for i in read_ids_file(spec.ids_file) if i not in known]
        if unknown:
            raise DataError(
                spec.ids_file,
                f"{len(unknown)} id(s) not in dataset {train.name!r} (e.g. {', '.join(map(repr, unknown[:5]))})",
            )
    if spec.classes or spec.ratio is not None:
        what = f"classes {', '.join(classes or [])}"
    elif spec.keyword is not None:
        what = f"keyword {spec.keyword!r}"
    else:
        what = f"ids from {spec.ids_file}"
    n_forget = sum(mask)
    if n_forget == 0:
        src = f"{spec.ids_file}: " if spec.ids_file is not None else ""
        raise MMError(f"{src}forget set is empty: {what} matches no training sample of dataset {train.name!r}")
    if n_forget == len(mask):
        raise MMError(f"forget set is the whole training set ({what}); nothing would be retained")
    f_idx = [i for i, m in enumerate(mask) if m]
    r_idx = [i for i, m in enumerate(mask) if not m]
    if test is None:
        test = ImageTextData(name=f"{train.name}-test", records=[], classnames=train.classnames,
                             templates=list(train.templates))
    if spec.ids_file is not None:
        t_mask = [False] * len(test)
    else:
        t_mask = forget_mask(test, spec, classes)
    return ForgetSplit(
        forget=train.subset(f_idx, name=f"{train.name}-forget"),
        retain=train.subset(r_idx, name=f"{train.name}-retain"),
        test_forget=test.subset([i for i, m in enumerate(t_mask) if m], name=f"{test.name}-forget"),
        test_retain=test.subset([i for i, m in enumerate(t_mask) if not m], name=f"{test.name}-retain"),
        forget_classes=classes,
        description=what,
    )
