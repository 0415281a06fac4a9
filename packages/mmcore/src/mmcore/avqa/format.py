"""Which AVQA annotation format a file is in: Music-AVQA (Li et al. 2022) or AVQA-Yang (Yang et al. 2022).

The format is decided from EVERY entry, not the first: an entry is Music-AVQA when it has one of
Music-AVQA's own keys (``question_content``, ``templ_values``, ``question_deleted``, ``anser``),
AVQA-Yang when it has one of AVQA-Yang's (``question_text``, ``multi_choice``, ``video_name``,
``question_type``, ``question_relation``), and neither when it has none (a malformed entry, left to
the loader's per-entry validation). A file holding entries of both formats, or an entry with keys of
both, is a :class:`~mmcore.errors.DataError` naming the file and an offending entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmcore.errors import DataError

MUSIC_AVQA = "music-avqa"
AVQA_YANG = "avqa-yang"
#: The annotation formats, as ``mm avqa stats --format`` names them.
AVQA_FORMATS: tuple[str, ...] = (MUSIC_AVQA, AVQA_YANG)

_OWN_KEYS: dict[str, frozenset[str]] = {
    MUSIC_AVQA: frozenset({"question_content", "templ_values", "question_deleted", "anser"}),
    AVQA_YANG: frozenset({"question_text", "multi_choice", "video_name", "question_type", "question_relation"}),
}
_TITLE = {MUSIC_AVQA: "Music-AVQA", AVQA_YANG: "AVQA-Yang"}
_A = {MUSIC_AVQA: "a Music-AVQA", AVQA_YANG: "an AVQA-Yang"}


def entry_format(entry: Any) -> str | None:
    """``"music-avqa"``, ``"avqa-yang"``, ``"both"`` (keys of both formats) or None (neither)."""
    if not isinstance(entry, dict):
        return None
    found = [f for f, keys in _OWN_KEYS.items() if keys & entry.keys()]
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
            keys = {f: sorted(_OWN_KEYS[f] & entry.keys()) for f in AVQA_FORMATS}
            raise DataError(
                path,
                f"entry {i} mixes the two annotation formats: it has Music-AVQA keys {keys[MUSIC_AVQA]} "
                f"and AVQA-Yang keys {keys[AVQA_YANG]}",
            )
        if fmt is not None:
            first.setdefault(fmt, i)
            count[fmt] = count.get(fmt, 0) + 1
    if len(count) < 2:
        return next(iter(count), None)
    major, minor = sorted(AVQA_FORMATS, key=lambda f: (-count[f], first[f]))
    raise DataError(
        path,
        f"mixes Music-AVQA and AVQA-Yang entries: entry {first[minor]} is {_A[minor]} entry "
        f"({count[minor]} such) while {count[major]} entries, from entry {first[major]} on, are "
        f"{_TITLE[major]}; give one format per file",
    )


def check_format(entries: Sequence[Any], path: str | Path | None, expected: str) -> None:
    """Raise :class:`DataError` unless every recognisable entry is in format ``expected``."""
    found = detect_format(entries, path)
    if found is not None and found != expected:
        i = next(i for i, e in enumerate(entries) if entry_format(e) == found)
        raise DataError(
            path, f"is {_A[found]} file (entry {i} and every other recognisable one), not {_A[expected]} file"
        )


def load_avqa_annotations(path: str | Path, *, format: str | None = None, skip_bad: bool = False) -> tuple[str, Any]:
    """Load a Music-AVQA or AVQA-Yang annotation file: ``(format, questions)``.

    ``format`` None decides it from all entries (Music-AVQA when none is recognisable, so a
    malformed file gets Music-AVQA's per-entry errors); ``"music-avqa"`` / ``"avqa-yang"`` insist on
    it (a file in the other format, or mixing both, is a :class:`DataError`)."""
    from mmcore.avqa import avqa_yang, music_avqa
    from mmcore.io import read_json

    if format is not None and format not in AVQA_FORMATS:
        raise DataError(path, f"unknown annotation format {format!r}; choose one of {', '.join(AVQA_FORMATS)}")
    if format is None:
        data = read_json(path)  # the loader reads it again: simpler than threading the parsed list through
        format = (detect_format(data, path) if isinstance(data, list) else None) or MUSIC_AVQA
    load = music_avqa.load_music_avqa if format == MUSIC_AVQA else avqa_yang.load_avqa_yang
    return format, load(path, skip_bad=skip_bad)
