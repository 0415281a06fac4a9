"""Helpers shared by the command modules. Nothing here imports torch: `mm --help` must stay fast."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "MM_DEBUG"


def _created_top(out: Any) -> Path | None:
    """The outermost directory of ``out`` (itself or a parent) that does not exist yet."""
    if not isinstance(out, str | Path):
        return None
    top, p = None, Path(out).expanduser().absolute()
    while not p.exists() and p != p.parent:
        top, p = p, p.parent
    return top


def _remove_if_empty(top: Path | None) -> None:
    """Remove ``top`` (created by this run) when it holds no file: a failed run leaves no empty output
    directory behind. Only the main process (RANK 0 or unset) removes anything."""
    if top is None or not top.is_dir() or os.environ.get("RANK", "0") != "0":
        return
    if all(p.is_dir() and not p.is_symlink() for p in top.rglob("*")):
        shutil.rmtree(top, ignore_errors=True)


def user_errors(fn: F) -> F:
    """Turn user errors (mmcore.errors.MMError, missing files) into one red line and exit code 2.

    ``mm --debug ...`` (or MM_DEBUG=1) re-raises them with the full traceback. When the command fails,
    an ``out`` directory it created and left without any file is removed (never one that existed before)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        created = _created_top(kwargs.get("out"))
        try:
            return _reporting_user_errors(fn, *args, **kwargs)
        except BaseException as e:
            if not (isinstance(e, typer.Exit) and e.exit_code == 0):
                _remove_if_empty(created)
            raise

    return wrapper  # type: ignore[return-value]


def _reporting_user_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:
        from mmcore.errors import MMError

        if os.environ.get(DEBUG_ENV) == "1" or not isinstance(e, MMError | FileNotFoundError):
            raise
        from rich.console import Console

        msg = str(e) if isinstance(e, MMError) else f"{e.filename}: file not found"
        Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print a list of dicts as a rich table (floats to 4 significant digits)."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    columns = columns or list(rows[0].keys())
    table = Table(title=title)
    for c in columns:
        table.add_column(str(c), justify="right" if isinstance(rows[0].get(c), int | float) else "left")
    for r in rows:
        table.add_row(*[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns])
    Console().print(table)


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr)
