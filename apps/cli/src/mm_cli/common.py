"""Helpers shared by the command modules. Nothing here imports torch: `mm --help` must stay fast."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "MM_DEBUG"


def user_errors(fn: F) -> F:
    """Turn user errors (mmcore.errors.MMError, missing files) into one red line and exit code 2.

    ``mm --debug ...`` (or MM_DEBUG=1) re-raises them with the full traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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

    return wrapper  # type: ignore[return-value]


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
