"""`mm unlearn run / eval / compare` end to end on a tiny model (CliRunner on the unlearn sub-app)."""

from __future__ import annotations

import json

import pytest
from mm_cli.unlearn_cmds import app
from typer.testing import CliRunner

TINY_TOML = """
model = "mm-micro-clip"
n_train = 80
n_test = 40
steps = 3
batch_size = 8
forget_batch_size = 4
checkpoint_every = 2
retrieval_max_pairs = 16
mia_max_samples = 32

[relearn]
enabled = false

[retrain]
fallback_steps = 2
batch_size = 8
"""


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return p


def invoke(*args):
    # TINY_TOML names an architecture (mm-micro-clip): random weights, so `run` and `compare` need --random-init
    extra = ["--random-init"] if args[0] in ("run", "compare") else []
    return CliRunner().invoke(app, [*(str(a) for a in args), *extra])


@pytest.mark.slow
def test_run_then_eval(tmp_path, cfg_file):
    out = tmp_path / "run"
    res = invoke("run", "--method", "cliperase", "--dataset", "shapes", "--forget-classes", "circle",
                 "--config", cfg_file, "--set", "lambda_forget=2.5", "--seed", 1, "--out", out)
    assert res.exit_code == 0, res.output
    assert "forget_accuracy" in res.output
    m = json.loads((out / "metrics.json").read_text())
    for phase in ("before", "after"):
        assert {"forget_accuracy", "retain_accuracy", "test_accuracy"} <= set(m[phase])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lambda_forget"] == 2.5 and cfg["seed"] == 1 and cfg["steps"] == 3  # file < --set / options
    assert cfg["forget"]["classes"] == ["circle"]
    assert (out / "model.safetensors").is_file() and (out / "report.md").is_file()

    # an existing output directory is not overwritten without --overwrite
    res = invoke("run", "--forget-classes", "circle", "--config", cfg_file, "--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.output

    ev = tmp_path / "ev"
    res = invoke("eval", "--model", out, "--forget-classes", "circle", "--config", cfg_file, "--seed", 1, "--out", ev)
    assert res.exit_code == 0, res.output
    e = json.loads((ev / "metrics.json").read_text())
    assert e["metrics"]["forget_accuracy"] == pytest.approx(m["after"]["forget_accuracy"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--forget-classes", "hexagonal"], "unknown class"),
        (["--forget-keyword", "zebra"], "forget set is empty"),
        (["--forget-classes", "circle", "--forget-keyword", "red"], "exactly one"),
        (["--forget-classes", "circle", "--method", "erase"], "method must be one of"),
        (["--forget-classes", "circle", "--set", "lamda_forget=1"], "unknown config key"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, cfg_file, args, message):
    res = invoke("run", *args, "--config", cfg_file, "--out", tmp_path / "o")
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_forget_ids_file_errors(tmp_path, cfg_file):
    ids = tmp_path / "ids.txt"
    ids.write_text("no-such-id\n")
    res = invoke("run", "--forget-ids", ids, "--config", cfg_file, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "ids.txt" in res.output


@pytest.mark.slow
def test_compare(tmp_path, cfg_file):
    out = tmp_path / "cmp"
    res = invoke("compare", "--methods", "cliperase,ft", "--forget-classes", "circle", "--config", cfg_file,
                 "--out", out)
    assert res.exit_code == 0, res.output
    comp = json.loads((out / "comparison.json").read_text())
    assert [r["method"] for r in comp["rows"]] == ["cliperase", "ft", "retrain"]
    assert (out / "comparison.png").stat().st_size > 1000 and "| cliperase |" in (out / "comparison.md").read_text()
