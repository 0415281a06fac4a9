"""One progress bar per stage of a run ("eval after · forget 100 + D_f 1600 + retain 2000 + test 900 images"),
instead of one unlabelled bar per encoding loop inside it: the stage's bar is transient (gone when the stage
ends) and the loops' own bars (:func:`mmcore.distributed.progress_bar`) are silenced while it runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mmcore.distributed import console, is_main_process

_QUIET = "MM_NO_PROGRESS"


@contextmanager
def stage(label: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A transient bar named ``label`` with ``total`` units; yields ``advance(n=1)``. Shown on the main
    process unless ``MM_NO_PROGRESS=1``; the variable is set for the stage's duration, then restored."""
    show = is_main_process() and os.environ.get(_QUIET) != "1"
    before = os.environ.get(_QUIET)
    os.environ[_QUIET] = "1"
    try:
        if not show:
            yield lambda n=1: None
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console(), transient=True) as prog:
                task = prog.add_task(label, total=total)
                yield lambda n=1: prog.update(task, advance=n)
    finally:
        if before is None:
            os.environ.pop(_QUIET, None)
        else:
            os.environ[_QUIET] = before
