"""Data problems every loader handles alike: :class:`Skipper` (raise the first unreadable item, or count it
with ``skip_bad``), :data:`SKIP_HINT` (what such an error suggests), and image checks that read headers
without decoding (:func:`image_ok` for a file, :func:`bytes_ok` for encoded bytes)."""

from __future__ import annotations

import io
from pathlib import Path

from mmcore.errors import DataError

#: Appended to the error of an unreadable item where ``skip_bad`` would skip it instead.
SKIP_HINT = " (pass skip_bad=True / --skip-bad to skip unreadable items)"


def image_ok(path: Path) -> str | None:
    """None if ``path`` is a readable image, else the reason it is not (header check, no full decode)."""
    from PIL import Image

    if not path.is_file():
        return "image file not found"
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises many types for corrupt files
        return f"cannot read image ({e})"
    return None


def bytes_ok(data: bytes) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception as e:
        return f"cannot read image ({e})"
    return None


class Skipper:
    """Either raises the first problem or counts it (``skip_bad``)."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.count = 0

    def bad(self, path: str | Path | None, problem: str) -> None:
        if not self.skip_bad:
            raise DataError(path, problem + SKIP_HINT)
        self.count += 1
