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

    # The AVQA part: one table with the three models and the chance level, one answered test question.
    assert "AVQA test accuracy" in res.output
    for row in ("SaSR-Net", "AVST", "question-only", "majority answer"):
        assert row in res.output
    avqa = summary["avqa"]
    for kind in ("sasrnet", "avst", "blind"):
        assert 0.0 <= avqa[kind]["test"]["overall"] <= 100.0
        vis = avqa[kind]["vision_templates"]
        assert 0.0 <= vis["accuracy"] <= 100.0 and vis["se"] >= 0.0
    assert avqa["sasrnet"]["params"] != avqa["blind"]["params"] != avqa["avst"]["params"]
    assert avqa["blind"]["temporal_max_v"] is None and 0.0 < avqa["avst"]["temporal_max_v"] <= 1.0
    pred = avqa["predict"]
    flat = " ".join(res.output.split())  # the runner's 80-column console wraps long lines
    assert f"predict ({pred['video_id']}.mp4, {pred['type']}): {pred['question']}" in flat
    for name, kind in (("SaSR-Net", "sasrnet"), ("AVST", "avst")):
        ans = pred["models"][kind]
        assert ans["answer"] == ans["top"][0]["answer"]  # the model's answer; the question's is true_answer
        assert f"{name} {ans['answer']!r} (" in flat
        weights = ans["temporal_attention"]["visual"]
        assert len(weights) == 10 and abs(sum(weights) - 1.0) < 1e-3
    assert "temporal attention, visual" in res.output and "vision templates" in flat

    # Second run reuses the cached CLIP, diffusion model, AVQA world and AVQA models instead of retraining.
    res2 = runner.invoke(app, args)
    assert res2.exit_code == 0, res2.output
    assert res2.output.count("reusing the cached") == 4
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["avqa"]["sasrnet"] == avqa["sasrnet"]

    # --no-avqa skips the AVQA part.
    res3 = runner.invoke(app, [*args, "--no-avqa", "--no-diffusion"])
    assert res3.exit_code == 0, res3.output
    assert "AVQA test accuracy" not in res3.output
    assert "avqa" not in json.loads((tmp_path / "out" / "summary.json").read_text())


def test_sparkline_scales_to_the_largest_weight():
    from mm_cli.demo_avqa import sparkline

    assert sparkline([0.1] * 4) == "████"
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([0.0, 0.0]) == "▁▁"


@pytest.mark.slow
def test_a_failing_background_avqa_part_is_reported_with_its_log(tmp_path):
    from mm_cli.demo_avqa import BackgroundAvqaDemo
    from mmcore.errors import MMError

    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache directory should be")
    job = BackgroundAvqaDemo(not_a_dir, tmp_path / "avqa", seed=0, tiny=True)
    try:
        with pytest.raises(MMError, match=r"the AVQA part failed \(exit code 1\); its log .*log\.txt ends"):
            job.result()
    finally:
        job.stop()
    assert "NotADirectoryError" in (tmp_path / "avqa" / "log.txt").read_text()
