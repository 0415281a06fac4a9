"""`mm`: one command line for the monorepo. Heavy libraries are imported inside commands only."""

from __future__ import annotations

import os

import typer

from mm_cli.common import DEBUG_ENV

app = typer.Typer(
    name="mm",
    help="Multimodal research toolkit: CLIP (mm clip), CLIPErase unlearning (mm unlearn), "
    "diffusion evaluation (mm diffusion), audio-visual QA with SaSR-Net (mm avqa), and `mm demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for user errors."),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _register() -> None:
    # Each module defines a Typer sub-app and imports nothing heavy at module level.
    from mm_cli import clip_cmds

    app.add_typer(clip_cmds.app, name="clip")
    unlearn_app = None
    for mod_name, name in (
        ("unlearn_cmds", "unlearn"),
        ("diffusion_cmds", "diffusion"),
        ("avqa_cmds", "avqa"),
        ("bench_cmds", "bench"),
    ):
        try:
            mod = __import__(f"mm_cli.{mod_name}", fromlist=["app"])
        except ModuleNotFoundError as e:
            if e.name != f"mm_cli.{mod_name}":
                raise
            continue
        app.add_typer(mod.app, name=name)
        if name == "diffusion" and unlearn_app is not None:
            # The diffusion evaluation of an unlearned text encoder lives with the diffusion code,
            # but users look for it under `mm unlearn`.
            unlearn_app.command("diffusion-eval")(mod.diffusion_eval)
        if name == "unlearn":
            unlearn_app = mod.app
    from mm_cli import demo_cmd

    app.command("demo")(demo_cmd.demo)


_register()

if __name__ == "__main__":
    app()
