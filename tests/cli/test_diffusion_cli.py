"""`mm diffusion pretrain` and the diffusion-eval command, end to end at tiny sizes (CliRunner)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def micro_clips(tmp_path_factory):
    import torch
    from mmcore.encoders.clip import create_clip, save_clip

    root = tmp_path_factory.mktemp("clips")
    for i, name in enumerate(("original", "unlearned")):
        torch.manual_seed(i)
        b = create_clip("mm-micro-clip")
        save_clip(b.model, root / name, b.model_name, b.model_cfg)
    return root / "original", root / "unlearned"


def _eval_app() -> typer.Typer:
    # The lead registers diffusion_eval as `mm unlearn diffusion-eval`; mount it the same way here.
    from mm_cli.diffusion_cmds import diffusion_eval

    app = typer.Typer()
    app.command("diffusion-eval")(diffusion_eval)
    app.command("noop")(lambda: None)  # a second command keeps the sub-command name in the CLI
    return app


@pytest.mark.slow
def test_pretrain_then_eval(micro_clips, tmp_path):
    from mm_cli.diffusion_cmds import app

    runner = CliRunner()
    pipe_dir = tmp_path / "pipe"
    r = runner.invoke(app, ["pretrain", "--clip", str(micro_clips[0]), "--out", str(pipe_dir), "--preset", "test",
                            "--set", "steps=2", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads((pipe_dir / "config.json").read_text())["seed"] == 1
    assert json.loads((pipe_dir / "metrics.json").read_text())["steps_done"] == 2
    assert (pipe_dir / "model_index.json").is_file()

    # A second run into the same dir needs --overwrite.
    r = runner.invoke(app, ["pretrain", "--clip", str(micro_clips[0]), "--out", str(pipe_dir), "--preset", "test"])
    assert r.exit_code == 2 and "--overwrite" in r.output

    out = tmp_path / "eval"
    r = runner.invoke(_eval_app(), [
        "diffusion-eval", "--original", str(micro_clips[0]), "--unlearned", str(micro_clips[1]),
        "--pipeline", str(pipe_dir), "--forget-prompts", "a circle", "--forget-prompts", "a photo of a circle",
        "--retain-prompts", "a square", "--retain-prompts", "a cross", "--out", str(out),
        "--n-per-prompt", "2", "--steps", "2", "--set", "grid_images=2",
    ])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    for k in ("forget_detection_before", "forget_detection_after", "retain_detection_before", "retain_detection_after",
              "forget_clip_score_before", "forget_clip_score_after", "per_concept", "prompts"):
        assert k in m
    assert set(m["per_concept"]) == {"circle", "square", "cross"}
    assert len(m["prompts"]) == 4 and m["n_per_prompt"] == 2
    assert (out / "grid.png").is_file() and (out / "config.json").is_file()
    assert "detection: forget" in r.output


def test_user_errors_are_one_line(micro_clips, tmp_path):
    from mm_cli.diffusion_cmds import app

    runner = CliRunner()
    r = runner.invoke(app, ["pretrain", "--clip", str(micro_clips[0]), "--out", str(tmp_path / "x"), "--preset", "nope"])
    assert r.exit_code == 2 and "--preset" in r.output
    r = runner.invoke(_eval_app(), [
        "diffusion-eval", "--original", str(micro_clips[0]), "--unlearned", str(micro_clips[1]),
        "--pipeline", str(tmp_path / "missing"), "--forget-prompts", "a circle", "--out", str(tmp_path / "e"),
    ])
    assert r.exit_code == 2 and "missing" in r.output and "Traceback" not in r.output


def test_cli_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, mm_cli.diffusion_cmds; print(any(m in sys.modules for m in ('torch', 'diffusers', 'open_clip')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
