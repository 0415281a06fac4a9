"""Load an AVQA annotation file of either format, Music-AVQA or AVQA-Yang, deciding which from every entry
(:mod:`mmcore.avqa.format`) unless told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.avqa import avqa_yang, music_avqa
from mmcore.avqa.format import AVQA_FORMATS, MUSIC_AVQA, detect_format
from mmcore.errors import DataError
from mmcore.io import read_json


def load_avqa_annotations(path: str | Path, *, format: str | None = None, skip_bad: bool = False) -> tuple[str, Any]:
    """Load a Music-AVQA or AVQA-Yang annotation file: ``(format, questions)``.

    ``format`` None decides it from all entries (Music-AVQA when none is recognisable, so a
    malformed file gets Music-AVQA's per-entry errors); ``"music-avqa"`` / ``"avqa-yang"`` insist on
    it (a file in the other format, or mixing both, is a :class:`DataError`)."""
    if format is not None and format not in AVQA_FORMATS:
        raise DataError(path, f"unknown annotation format {format!r}; choose one of {', '.join(AVQA_FORMATS)}")
    if format is None:
        data = read_json(path)  # the loader reads it again: simpler than threading the parsed list through
        format = (detect_format(data, path) if isinstance(data, list) else None) or MUSIC_AVQA
    load = music_avqa.load_music_avqa if format == MUSIC_AVQA else avqa_yang.load_avqa_yang
    return format, load(path, skip_bad=skip_bad)
