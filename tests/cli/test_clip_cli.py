"""`mm clip pretrain` / `mm clip eval` through Typer's CliRunner (tiny sizes)."""

from __future__ import annotations

import json

from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()

TINY = ["--set", "model=mm-micro-clip", "--set", "n_train=64", "--set", "n_test=30", "--set", "steps=2",
        "--set", "batch_size=32", "--set", "eval_every=0", "--set", "warmup=1"]


def test_pretrain_then_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    out = tmp_path / "run"
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('lr = 0.0005\ntemplates = ["a photo of a {}"]\n')
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(out), "--seed", "7", "--config", str(cfg_file), *TINY])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 7 and cfg["lr"] == 0.0005 and cfg["steps"] == 2 and cfg["model"] == "mm-micro-clip"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["zero_shot_accuracy"] <= 1.0 and metrics["wall_seconds"] > 0
    assert "zero_shot_accuracy" in r.output

    # a non-empty output dir needs --overwrite (exit 2, one-line error)
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(out), *TINY])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(out), "--resume", *TINY])
    assert r.exit_code == 0, r.output

    ev = tmp_path / "eval"
    r = runner.invoke(app, ["clip", "eval", "--model", str(out), "--dataset", "shapes", "--n", "30", "--out", str(ev)])
    assert r.exit_code == 0, r.output
    em = json.loads((ev / "metrics.json").read_text())
    assert {"zero_shot_accuracy", "i2t_R@1", "t2i_R@10"} <= set(em)
    assert 0.0 <= em["zero_shot_accuracy"] <= 1.0 and 0.0 <= em["t2i_R@10"] <= 100.0


def test_user_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(tmp_path / "x"), "--set", "nosuchkey=1"])
    assert r.exit_code == 2 and "nosuchkey" in r.output
    r = runner.invoke(app, ["clip", "eval", "--model", "mm-tiny-clp", "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "mm-tiny-clip" in r.output
    r = runner.invoke(app, ["clip", "eval", "--model", str(tmp_path / "missing_dir"), "--out", str(tmp_path / "e2")])
    assert r.exit_code == 2 and "not found" in r.output


def test_help_lists_commands():
    r = runner.invoke(app, ["clip", "--help"])
    assert r.exit_code == 0 and "pretrain" in r.output and "eval" in r.output
