"""User-facing errors.

Every problem a user can fix (bad file, bad option, missing data) raises :class:`MMError`.
The CLI prints its message on one line and exits with code 2; no traceback unless ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class MMError(Exception):
    """An error caused by user input; the message says what is wrong and how to fix it."""


class DataError(MMError):
    """A data file is missing, malformed or inconsistent. The message names the file."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class ImageReadError(DataError):
    """An image file (or an encoded image) is missing or cannot be decoded."""


class ConfigError(MMError):
    """A configuration value or command-line option is invalid."""
