"""`mm bench NAME`: run a benchmark from the repository's benchmarks/ folder."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mm_cli.common import user_errors

app = typer.Typer(help="Run benchmarks (results go to benchmarks/results/NAME.json + PNG).")


def _repo_root() -> Path:
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "benchmarks" / "__main__.py").is_file():
            return d
    from mmcore.errors import MMError

    raise MMError("benchmarks/ not found: run `mm bench` from inside the mm repository")


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Benchmark name (see `mm bench list`)."),
) -> None:
    """Run benchmark NAME; extra arguments (e.g. --quick) are passed to it."""
    sys.path.insert(0, str(_repo_root()))
    from benchmarks.__main__ import main

    raise typer.Exit(main([name, *ctx.args]))


@app.command("list")
@user_errors
def list_benchmarks() -> None:
    """List the available benchmarks."""
    sys.path.insert(0, str(_repo_root()))
    from benchmarks.__main__ import available

    for n in available():
        typer.echo(n)
