"""Issue 7 at the CLI level: every bad input gives exit code 2 and ONE line naming the file and the
problem (no traceback; `mm --debug` re-raises it), nothing already written is lost, and `--skip-bad`
skips and counts bad items into the run's metrics file.

Everything is tiny: two 2-second mp4s, random feature files, a 1-epoch question-only AVQA model,
micro CLIPs and a 1-step diffusion pipeline, all built once per module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # `mm --debug` sets MM_DEBUG=1 in os.environ; monkeypatch restores the variable after each test.
    monkeypatch.setenv("MM_DEBUG", "0")

TEMPLATES = [
    (["Audio", "Counting"], "How many instruments are sounding in the video?", [], ["one", "two", "three"]),
    (["Visual", "Location"], "Where is the <Object>?", ["piano"], ["left", "right", "middle"]),
]


def _avqa_dir(root: Path, n_videos: int = 9, t: int = 4) -> Path:
    """Music-AVQA-format annotations + ST-AVQA-layout random features (no video decoding)."""
    rng = np.random.default_rng(0)
    for sub in ("features/audio", "features/visual", "annotations"):
        (root / sub).mkdir(parents=True)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    qid = 0
    for v in range(n_videos):
        vid = f"{v:08d}"
        split = "train" if v < 6 else ("val" if v % 2 else "test")
        np.save(root / "features/audio" / f"{vid}.npy", rng.normal(size=(t, 128)).astype(np.float32))
        np.save(root / "features/visual" / f"{vid}.npy", rng.normal(size=(t, 8, 2, 2)).astype(np.float32))
        for qtype, template, values, answers in TEMPLATES:
            splits[split].append({
                "video_id": vid, "question_id": qid, "type": json.dumps(qtype), "question_content": template,
                "templ_values": json.dumps(values), "question_deleted": 0, "anser": answers[v % len(answers)],
            })  # fmt: skip
            qid += 1
    for name, qs in splits.items():
        (root / "annotations" / f"avqa-{name}.json").write_text(json.dumps(qs))
    return root


AVQA_TINY = ["--model", "blind", "--size", "cpu-tiny", "--epochs", "1", "--batch-size", "4",
             "--set", "checkpoint_every_steps=100"]


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """The bad (and good) inputs, built once."""
    import torch
    from mmcore.encoders.clip import create_clip, save_clip
    from mmcore.media import truncate_file, write_video

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bad_inputs")
    p: dict[str, Path] = {"root": root}

    # videos: one good clip per folder, next to the bad one
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)  # 2 s at 4 fps
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    good = write_video(root / "good.mp4", frames, 4, audio=wave)
    for case in ("truncated", "corrupt", "noaudio"):
        (root / f"videos_{case}").mkdir()
        shutil.copy(good, root / f"videos_{case}" / "a_good.mp4")
    shutil.copy(good, root / "videos_truncated" / "b_truncated.mp4")
    truncate_file(root / "videos_truncated" / "b_truncated.mp4", 0.5)
    (root / "videos_corrupt" / "b_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.bytes(3000))
    write_video(root / "videos_noaudio" / "b_noaudio.mp4", frames, 4)

    # AVQA data + a trained question-only model
    data = _avqa_dir(root / "avqa")
    p["avqa"] = data
    res = runner.invoke(app, ["avqa", "train", "--data", str(data), "--out", str(root / "avqa_run"), *AVQA_TINY])
    assert res.exit_code == 0, res.output
    p["avqa_run"] = root / "avqa_run"
    test_ann = json.loads((data / "annotations/avqa-test.json").read_text())
    test_ann[0]["anser"] = "seventeen"
    (root / "unseen.json").write_text(json.dumps(test_ann))
    for case in ("missing_npy", "shape_npy"):
        shutil.copytree(data, root / case)
    (root / "missing_npy/features/audio/00000006.npy").unlink()  # a test video
    np.save(root / "shape_npy/features/visual/00000000.npy", np.zeros((4, 8), np.float32))  # a train video

    # annotation files for `mm avqa stats`
    (root / "malformed.json").write_text('[{"video_id": "1", ')
    entry = json.loads((data / "annotations/avqa-train.json").read_text())[0]
    entry["answer"] = entry.pop("anser")  # the right file with a wrong key
    (root / "wrongkey.json").write_text(json.dumps([entry]))
    (root / "empty_ids.txt").write_text("\n")

    # CLIPs: a micro one, and a micro config holding the weights of the tiny architecture
    torch.manual_seed(0)
    micro = create_clip("mm-micro-clip")
    save_clip(micro.model, root / "micro", micro.model_name, micro.model_cfg)
    tiny = create_clip("mm-tiny-clip")
    save_clip(tiny.model, root / "tiny", tiny.model_name, tiny.model_cfg)
    shutil.copytree(root / "micro", root / "other_arch")
    shutil.copy(root / "tiny/model.safetensors", root / "other_arch/model.safetensors")
    p["micro"], p["tiny"] = root / "micro", root / "tiny"

    # a diffusion pipeline conditioned on the tiny CLIP's text width (micro CLIP width: 32)
    res = runner.invoke(app, ["diffusion", "pretrain", "--clip", str(root / "tiny"), "--out", str(root / "pipe_tiny"),
                              "--preset", "test", "--set", "steps=1", "--set", "detector_steps=1"])
    assert res.exit_code == 0, res.output
    return p


def _cases() -> list:
    """(id, argv with {root} placeholders, substrings the one error line must contain)."""
    ef = ["avqa", "extract-features", "--out", "{out}"]
    ev = ["avqa", "eval", "--checkpoint", "{root}/avqa_run", "--out", "{out}"]
    ul = ["unlearn", "run", "--out", "{out}", "--model", "{root}/micro", "--set", "n_train=40", "--set", "n_test=20",
          "--steps", "1"]
    return [
        ("truncated-mp4", [*ef, "--videos", "{root}/videos_truncated"], ["b_truncated.mp4"]),
        ("corrupt-mp4", [*ef, "--videos", "{root}/videos_corrupt"], ["b_corrupt.mp4"]),
        ("mp4-without-audio", [*ef, "--videos", "{root}/videos_noaudio"], ["b_noaudio.mp4", "audio"]),
        ("missing-npy-eval", [*ev, "--data", "{root}/missing_npy"], ["00000006.npy"]),
        ("wrong-shape-npy-train", ["avqa", "train", "--data", "{root}/shape_npy", "--out", "{out}", *AVQA_TINY],
         ["00000000.npy", "shape"]),
        ("malformed-json", ["avqa", "stats", "{root}/malformed.json"], ["malformed.json", "malformed JSON"]),
        ("wrong-key-json", ["avqa", "stats", "{root}/wrongkey.json"], ["wrongkey.json", "anser"]),
        ("empty-forget-ids", [*ul, "--forget-ids", "{root}/empty_ids.txt"], ["empty_ids.txt"]),
        ("forget-class-matches-nothing", [*ul, "--forget-classes", "hexagon"], ["hexagon"]),
        ("forget-keyword-matches-nothing", [*ul, "--forget-keyword", "zebra"], ["zebra", "empty"]),
        ("checkpoint-of-other-architecture",
         ["clip", "eval", "--model", "{root}/other_arch", "--n", "10", "--out", "{out}"], ["model.safetensors"]),
        ("text-width-mismatch",
         ["unlearn", "diffusion-eval", "--original", "{root}/micro", "--unlearned", "{root}/micro",
          "--pipeline", "{root}/pipe_tiny", "--forget-prompts", "a circle", "--out", "{out}", "--n-per-prompt", "1",
          "--steps", "1"], ["micro (unlearned)", "cross_attention_dim 128"]),
        ("missing-data-root-clip",
         ["clip", "eval", "--model", "{root}/micro", "--dataset", "cifar100", "--data-root", "{root}/nowhere",
          "--out", "{out}"], ["nowhere"]),
        ("missing-data-root-unlearn",
         [*ul, "--dataset", "flickr30k", "--data-root", "{root}/nowhere", "--forget-keyword", "dog"], ["nowhere"]),
        ("missing-data-root-avqa", ["avqa", "train", "--data", "{root}/nowhere", "--out", "{out}", *AVQA_TINY],
         ["nowhere"]),
    ]


CASES = _cases()


def _argv(args: list[str], w: dict[str, Path], out: Path) -> list[str]:
    return [a.format(root=w["root"], out=out) for a in args]


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:") and "Traceback" not in output, output
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("args, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(w, tmp_path, args, needles):
    res = runner.invoke(app, _argv(args, w, tmp_path / "out"))
    assert res.exit_code == 2, (res.output, res.exception)
    line = _one_error_line(res.output)
    for n in needles:
        assert n in line, line


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt-mp4", "wrong-key-json", "missing-data-root-avqa"])
def test_debug_shows_the_traceback(w, tmp_path, case):
    from mmcore.errors import MMError

    args = next(c[1] for c in CASES if c[0] == case)
    res = runner.invoke(app, ["--debug", *_argv(args, w, tmp_path / "out")])
    # The user error propagates (CliRunner catches it: a real terminal prints the full traceback).
    assert res.exit_code == 1 and isinstance(res.exception, MMError), (res.output, res.exception)
    assert res.exc_info is not None and res.exc_info[2] is not None


@pytest.mark.slow
def test_bad_video_keeps_features_already_written_and_skip_bad_counts(w, tmp_path):
    vids, out = tmp_path / "videos", tmp_path / "feats"
    vids.mkdir()
    shutil.copy(w["root"] / "videos_corrupt/a_good.mp4", vids / "a_good.mp4")
    res = runner.invoke(app, ["avqa", "extract-features", "--videos", str(vids), "--out", str(out)])
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in (out / "visual").iterdir()} | {
        "audio/" + p.name: p.read_bytes() for p in (out / "audio").iterdir()}
    for case in ("truncated", "corrupt", "noaudio"):  # a bad video arrives later: the earlier work survives
        bad = next((w["root"] / f"videos_{case}").glob("b_*.mp4"))
        shutil.copy(bad, vids / bad.name)
        res = runner.invoke(app, ["avqa", "extract-features", "--videos", str(vids), "--out", str(out)])
        assert res.exit_code == 2 and bad.name in _one_error_line(res.output)
        after = {p.name: p.read_bytes() for p in (out / "visual").iterdir()} | {
            "audio/" + p.name: p.read_bytes() for p in (out / "audio").iterdir()}
        assert after == before
        (vids / bad.name).unlink()
    for case in ("truncated", "corrupt", "noaudio"):
        shutil.copy(next((w["root"] / f"videos_{case}").glob("b_*.mp4")), vids)
    res = runner.invoke(app, ["avqa", "extract-features", "--videos", str(vids), "--out", str(out), "--skip-bad"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "features.json").read_text())
    assert meta["n_bad"] == 3 and meta["n_existing"] == 1
    assert {b["video"] for b in meta["bad"]} == {"b_truncated.mp4", "b_corrupt.mp4", "b_noaudio.mp4"}


@pytest.mark.slow
def test_avqa_skip_bad_counts_land_in_metrics_json(w, tmp_path):
    res = runner.invoke(app, ["avqa", "train", "--data", str(w["root"] / "shape_npy"), "--out", str(tmp_path / "t"),
                              *AVQA_TINY, "--skip-bad"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "t/metrics.json").read_text())
    assert m["skipped"]["train_features"] == len(TEMPLATES)  # the questions of the bad video

    res = runner.invoke(app, ["avqa", "eval", "--checkpoint", str(w["avqa_run"]), "--data", str(w["avqa"]),
                              "--ann", str(w["root"] / "unseen.json"), "--out", str(tmp_path / "e1"), "--skip-bad"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "e1/metrics.json").read_text())
    assert m["unseen_answers"] == 1 and "unseen_answers" not in m["skipped"]  # counted as wrong, never skipped

    res = runner.invoke(app, ["avqa", "eval", "--checkpoint", str(w["avqa_run"]), "--data", str(w["root"] / "missing_npy"),
                              "--out", str(tmp_path / "e2"), "--skip-bad"])
    assert res.exit_code == 0, res.output
    skipped = json.loads((tmp_path / "e2/metrics.json").read_text())["skipped"]
    assert sum(skipped.values()) == len(TEMPLATES), skipped


@pytest.mark.slow
def test_avqa_eval_never_replaces_a_non_empty_out(w, tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    args = ["avqa", "eval", "--checkpoint", str(w["avqa_run"]), "--data", str(w["avqa"]), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in _one_error_line(res.output)
    assert [p.name for p in out.iterdir()] == ["metrics.json"] and (out / "metrics.json").read_text() == "{}"
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_real_process_prints_one_line_and_debug_prints_the_traceback(tmp_path):
    """The same through a real `python -m mm_cli.main` process (stderr as a terminal user sees it)."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "broken.json"
    bad.write_text('[{"video_id": ')
    env = {**os.environ, "MM_NO_PROGRESS": "1"}
    env.pop("MM_DEBUG", None)
    cmd = [sys.executable, "-m", "mm_cli.main"]
    p = subprocess.run([*cmd, "avqa", "stats", str(bad)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and str(bad) in p.stderr and "malformed JSON" in p.stderr, p.stderr
    p = subprocess.run([*cmd, "--debug", "avqa", "stats", str(bad)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 1 and "Traceback (most recent call last)" in p.stderr and "DataError" in p.stderr, p.stderr
