"""Which AVQA annotation format a file is in: Music-AVQA (Li et al. 2022) or AVQA-Yang (Yang et al. 2022).

The format is decided from EVERY entry, not the first: an entry is Music-AVQA when it has one of
Music-AVQA's own keys (``question_content``, ``templ_values``, ``question_deleted``, ``anser``),
AVQA-Yang when it has one of AVQA-Yang's (``question_text``, ``multi_choice``, ``video_name``,
``question_type``, ``question_relation``), and neither when it has none (a malformed entry, left to
the loader's per-entry validation). A file holding entries of both formats, or an entry with keys of
both, is a :class:`~mmcore.errors.DataError` naming the file and an offending entry.

:func:`read_question_list` reads a file of either format, checked to be in it (each format's loader,
:func:`mmcore.avqa.music_avqa.load_music_avqa` / :func:`mmcore.avqa.avqa_yang.load_avqa_yang`, passes its entry
parser); :func:`mmcore.avqa.annotations.load_avqa_annotations` loads a file of either, deciding which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mmcore.errors import DataError
from mmcore.io import read_json

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
