"""`mm avqa ...`: audio-visual question answering. Commands live in three modules by topic."""

from __future__ import annotations

import typer

app = typer.Typer(help="Audio-visual QA (SaSR-Net, AVST, question-only): data, features, training, evaluation.",
                  no_args_is_help=True)

for _mod_name in ("avqa_data_cmds", "avqa_features_cmds", "avqa_model_cmds"):
    try:
        _mod = __import__(f"mm_cli.{_mod_name}", fromlist=["register"])
    except ModuleNotFoundError as e:
        if e.name != f"mm_cli.{_mod_name}":
            raise
        continue
    _mod.register(app)
