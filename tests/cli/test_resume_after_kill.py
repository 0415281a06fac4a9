"""Issue 7 at the CLI level: `mm clip pretrain` and `mm diffusion pretrain` killed with SIGKILL right
after a periodic checkpoint, then `--resume`d, end with the same metrics and weights as an
uninterrupted run with the same seed (CPU, one thread).

`mm unlearn run` and `mm avqa train` have the same SIGKILL test at the library level
(tests/cliperase/test_runs.py, tests/sasrnet/test_reliability.py).

The killed run is a real `python -m mm_cli.main` process. A sitecustomize module on its PYTHONPATH
makes it sleep right after writing its first checkpoint, so the kill always lands mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # `mm --debug` sets MM_DEBUG=1 in os.environ; monkeypatch restores the variable after each test.
    monkeypatch.setenv("MM_DEBUG", "0")

PAUSE_AFTER_CHECKPOINT = textwrap.dedent("""
    import os, time
    if os.environ.get("MM_TEST_PAUSE_AFTER_CHECKPOINT") == "1":
        import mmcore.checkpoint as _ckpt
        _save = _ckpt.save_training_state
        def _save_then_pause(*args, **kwargs):
            _save(*args, **kwargs)
            time.sleep(600)  # killed here
        _ckpt.save_training_state = _save_then_pause
""")

CLIP = ["clip", "pretrain", "--seed", "3", "--set", "model=mm-micro-clip", "--set", "n_train=64", "--set", "n_test=20",
        "--set", "steps=6", "--set", "batch_size=16", "--set", "eval_every=0", "--set", "warmup=1",
        "--set", "checkpoint_every=2", "--set", "log_every=1"]


def _diffusion(clip_dir: Path) -> list[str]:
    return ["diffusion", "pretrain", "--clip", str(clip_dir), "--preset", "test", "--seed", "1", "--set", "steps=6",
            "--set", "checkpoint_every=2", "--set", "detector_steps=2"]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _kill_after_first_checkpoint(args: list[str], out: Path, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_AFTER_CHECKPOINT)
    env = {**os.environ, "MM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "MM_TEST_PAUSE_AFTER_CHECKPOINT": "1",
           "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "mm_cli.main", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = out / "checkpoint" / "state.json"
    try:
        deadline = time.monotonic() + 240
        while not state.is_file():
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(state.read_text())["step"] == 2
    assert not (out / "metrics.json").exists()  # killed mid-training: no final metrics


def _spy_resume(monkeypatch, module) -> list[int]:
    """Record the step each load_training_state call resumes from (fails the test if resume restarts)."""
    steps: list[int] = []
    real = module.load_training_state

    def spy(*a, **k):
        info = real(*a, **k)
        steps.append(info["step"])
        return info

    monkeypatch.setattr(module, "load_training_state", spy)
    return steps


def _timeless(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.endswith("seconds") and k != "time"}


def _same_weights(a: Path, b: Path) -> None:
    import torch
    from mmcore.io import load_safetensors

    wa, wb = load_safetensors(a), load_safetensors(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), a.name


@pytest.mark.slow
def test_clip_pretrain_sigkill_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    import mmcore.checkpoint

    killed, straight = tmp_path / "killed", tmp_path / "straight"
    _kill_after_first_checkpoint(CLIP, killed, tmp_path)
    # the interrupted run is neither overwritten nor silently restarted without --resume
    res = runner.invoke(app, [*CLIP, "--out", str(killed)])
    assert res.exit_code == 2 and "--overwrite" in res.output

    resumed_from = _spy_resume(monkeypatch, mmcore.checkpoint)
    res = runner.invoke(app, [*CLIP, "--out", str(killed), "--resume"])
    assert res.exit_code == 0, res.output
    assert resumed_from == [2]
    res = runner.invoke(app, [*CLIP, "--out", str(straight)])
    assert res.exit_code == 0, res.output

    a, b = (json.loads((d / "metrics.json").read_text()) for d in (killed, straight))
    assert a["steps"] == 6 and _timeless(a) == _timeless(b)
    _same_weights(killed / "model.safetensors", straight / "model.safetensors")


@pytest.mark.slow
def test_diffusion_pretrain_sigkill_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    import mmcore.checkpoint
    import torch
    from mmcore.encoders.clip import create_clip, save_clip

    torch.manual_seed(0)
    b = create_clip("mm-micro-clip")
    save_clip(b.model, tmp_path / "clip", b.model_name, b.model_cfg)
    args = _diffusion(tmp_path / "clip")
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    _kill_after_first_checkpoint(args, killed, tmp_path)

    resumed_from = _spy_resume(monkeypatch, mmcore.checkpoint)
    res = runner.invoke(app, [*args, "--out", str(killed), "--resume"])
    assert res.exit_code == 0, res.output
    assert resumed_from == [2]
    res = runner.invoke(app, [*args, "--out", str(straight)])
    assert res.exit_code == 0, res.output

    a, b = (json.loads((d / "metrics.json").read_text()) for d in (killed, straight))
    assert a["steps_done"] == 6 and _timeless(a) == _timeless(b)
    for f in ("unet/diffusion_pytorch_model.safetensors", "detector/model.safetensors"):
        _same_weights(killed / f, straight / f)
