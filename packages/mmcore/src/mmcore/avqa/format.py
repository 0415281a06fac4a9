"""Which AVQA annotation format a file is in: Music-AVQA (Li et al. 2022) or AVQA-Yang (Yang et al. 2022).

The format is decided from EVERY entry, not the first: an entry is Music-AVQA when it has one of
Music-AVQA's own keys (``question_content``, ``templ_values``, ``question_deleted``, ``anser``),
AVQA-Yang when it has one of AVQA-Yang's (``question_text``, ``multi_choice``, ``video_name``,
``question_type``, ``question_relation``) — each format a registered :class:`AnnotationFormat`, so a new one
is one :func:`register_annotation_format` call — and neither when it has none (a malformed entry, left to
the loader's per-entry validation). A file holding entries of both formats, or an entry with keys of
both, is a :class:`~mmcore.errors.DataError` naming the file and an offending entry.

:func:`read_question_list` reads a file of either format, checked to be in it (each format's loader,
:func:`mmcore.avqa.music_avqa.load_music_avqa` / :func:`mmcore.avqa.avqa_yang.load_avqa_yang`, passes its entry
parser); :func:`mmcore.avqa.annotations.load_avqa_annotations` loads a file of either, deciding which.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.errors import DataError
from mmcore.io import read_json
from mmcore.registry import Registry

MUSIC_AVQA = "music-avqa"
AVQA_YANG = "avqa-yang"


@dataclass(frozen=True)
class AnnotationFormat:
    """One AVQA annotation format: the keys only its entries have, and its loader (``"module:function"``, called
    as ``load(path, skip_bad=...)``, imported when used)."""

    name: str
    title: str  # as messages name it: "Music-AVQA"
    article: str  # "a" | "an", before the title
    own_keys: frozenset[str]
    loader: str

    def load(self, path: str | Path, *, skip_bad: bool = False) -> Any:
        module, attr = self.loader.split(":")
        return getattr(importlib.import_module(module), attr)(path, skip_bad=skip_bad)


_FORMATS: Registry[AnnotationFormat] = Registry("annotation format")


def register_annotation_format(fmt: AnnotationFormat) -> AnnotationFormat:
    """Make ``fmt`` detectable and loadable (``load_avqa_annotations``, ``mm avqa stats --format``)."""
    return _FORMATS.register(fmt.name, fmt)


def unregister_annotation_format(name: str) -> None:
    """Remove format ``name`` (a test's or a plugin's cleanup)."""
    _FORMATS.unregister(name)


def annotation_formats() -> tuple[str, ...]:
    """The registered annotation formats, as ``mm avqa stats --format`` names them."""
    return tuple(f.name for f in _FORMATS)


def annotation_format(name: str) -> AnnotationFormat:
    """The registered format ``name``; a KeyError naming the choices otherwise."""
    fmt = _FORMATS.find(name)
    if fmt is None:
        raise KeyError(f"unknown annotation format {name!r}; choose one of {', '.join(annotation_formats())}")
    return fmt


register_annotation_format(AnnotationFormat(
    MUSIC_AVQA, "Music-AVQA", "a", frozenset({"question_content", "templ_values", "question_deleted", "anser"}),
    "mmcore.avqa.music_avqa:load_music_avqa"))
register_annotation_format(AnnotationFormat(
    AVQA_YANG, "AVQA-Yang", "an",
    frozenset({"question_text", "multi_choice", "video_name", "question_type", "question_relation"}),
    "mmcore.avqa.avqa_yang:load_avqa_yang"))


def _a(name: str) -> str:
    f = annotation_format(name)
    return f"{f.article} {f.title}"


def entry_format(entry: Any) -> str | None:
    """The registered format whose own keys ``entry`` has (``"music-avqa"``, ``"avqa-yang"``), ``"both"`` (keys
    of more than one format) or None (none)."""
    if not isinstance(entry, dict):
        return None
    found = [f.name for f in _FORMATS if f.own_keys & entry.keys()]
    return "both" if len(found) > 1 else (found[0] if found else None)


def detect_format(entries: Sequence[Any], path: str | Path | None) -> str | None:
    """The one format of all ``entries`` (None when no entry is recognisably either).

    Raises :class:`DataError` naming ``path`` when the entries mix the two formats: the offending
    entry named is the first of the less common format."""
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for i, entry in enumerate(entries):
        fmt = entry_format(entry)
        if fmt == "both":
            keys = {f.title: sorted(f.own_keys & entry.keys()) for f in _FORMATS if f.own_keys & entry.keys()}
            raise DataError(
                path,
                f"entry {i} mixes the {'two' if len(keys) == 2 else len(keys)} annotation formats: it has "
                + " and ".join(f"{title} keys {k}" for title, k in keys.items()),
            )
        if fmt is not None:
            first.setdefault(fmt, i)
            count[fmt] = count.get(fmt, 0) + 1
    if len(count) < 2:
        return next(iter(count), None)
    major, minor = sorted(count, key=lambda f: (-count[f], first[f]))[:2]
    titles = " and ".join(f.title for f in _FORMATS if f.name in count)
    raise DataError(
        path,
        f"mixes {titles} entries: entry {first[minor]} is {_a(minor)} entry "
        f"({count[minor]} such) while {count[major]} entries, from entry {first[major]} on, are "
        f"{_FORMATS.find(major).title}; give one format per file",
    )


def check_format(entries: Sequence[Any], path: str | Path | None, expected: str) -> None:
    """Raise :class:`DataError` unless every recognisable entry is in format ``expected``."""
    found = detect_format(entries, path)
    if found is not None and found != expected:
        i = next(i for i, e in enumerate(entries) if entry_format(e) == found)
        raise DataError(
            path, f"is {_a(found)} file (entry {i} and every other recognisable one), not {_a(expected)} file"
        )


class QuestionList(list):
    """A list of questions that also remembers how many bad entries were skipped and why."""

    def __init__(self, items: Iterable[Any] = (), skipped: int = 0, problems: list[str] | None = None):
        super().__init__(items)
        self.skipped = skipped
        self.problems: list[str] = problems or []


def read_question_list(
    path: str | Path, parse: Callable[[Any, int], Any], *, skip_bad: bool = False, fmt: str | None = None
) -> QuestionList:
    """Read a JSON list of annotation entries and ``parse(entry, index)`` each one.

    ``parse`` raises ValueError for a malformed entry (→ :class:`DataError` naming the file and the
    entry, or skipped and counted with ``skip_bad``) and may return None to drop an entry. With
    ``fmt`` ("music-avqa" / "avqa-yang") every entry is checked first: a file in the other format,
    or mixing both, is a :class:`DataError` (:func:`check_format`), never a file
    whose other-format entries ``skip_bad`` would silently drop."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON list of question objects, got {type(data).__name__}")
    if fmt is not None:
        check_format(data, path, fmt)
    out = QuestionList()
    for i, entry in enumerate(data):
        try:
            q = parse(entry, i)
        except ValueError as e:
            problem = f"entry {i}: {e}"
            if not skip_bad:
                raise DataError(path, problem) from None
            out.skipped += 1
            out.problems.append(problem)
            continue
        if q is not None:
            out.append(q)
    return out
