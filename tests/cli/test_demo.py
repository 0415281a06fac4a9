"""`mm demo` end to end at smoke-test sizes: every stage runs and the summary has real numbers."""

import json

import pytest
from mm_cli.main import app
from typer.testing import CliRunner


@pytest.mark.slow
def test_demo_tiny_runs_every_stage_and_reuses_the_cache(tmp_path):
    runner = CliRunner()
    args = ["demo", "--tiny", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for split in ("forget_accuracy", "retain_accuracy", "test_accuracy"):
        assert 0.0 <= summary["unlearning"]["before"][split] <= 100.0
    assert {"forget_detection_before", "forget_detection_after"} <= set(summary["diffusion"])
    assert (tmp_path / "out" / "diffusion" / "grid.png").stat().st_size > 0
    assert "Zero-shot accuracy before / after" in res.output

    # Second run reuses both cached models instead of retraining them.
    res2 = runner.invoke(app, args)
    assert res2.exit_code == 0, res2.output
    assert res2.output.count("reusing the cached") == 2
