"""Load an AVQA annotation file of any registered format (Music-AVQA, AVQA-Yang), deciding which from every entry
(:mod:`mmcore.avqa.format`) unless told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.avqa.format import MUSIC_AVQA, annotation_format, annotation_formats, detect_format
from mmcore.errors import DataError
from mmcore.io import read_json


def load_avqa_annotations(path: str | Path, *, format: str | None = None, skip_bad: bool = False) -> tuple[str, Any]:
    """Load a Music-AVQA or AVQA-Yang annotation file: ``(format, questions)``.

    ``format`` None decides it from all entries (Music-AVQA when none is recognisable, so a
    malformed file gets Music-AVQA's per-entry errors); ``"music-avqa"`` / ``"avqa-yang"`` insist on
    it (a file in the other format, or mixing both, is a :class:`DataError`)."""
    if format is not None and format not in annotation_formats():
        raise DataError(path, f"unknown annotation format {format!r}; choose one of {', '.join(annotation_formats())}")
    if format is None:
        data = read_json(path)  # the loader reads it again: simpler than threading the parsed list through
        format = (detect_format(data, path) if isinstance(data, list) else None) or MUSIC_AVQA
    return format, annotation_format(format).load(path, skip_bad=skip_bad)
