"""`mm avqa extract-features`: writes the layout, resumes, reports bad videos in one line with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import typer
from mm_cli.avqa_features_cmds import register
from typer.testing import CliRunner


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _group() -> None:  # keeps `extract-features` a sub-command, as under `mm avqa`
        pass

    register(app)
    return app


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from mmcore.media import truncate_file, write_video

    d = tmp_path_factory.mktemp("cli_videos")
    rng = np.random.default_rng(0)
    sr = 16000
    for i in range(2):
        frames = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)  # 2 s at 4 fps
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr)).astype(np.float32)
        write_video(d / "good" / f"v{i}.mp4", frames, 4, audio=wave, sample_rate=sr)
    shutil.copytree(d / "good", d / "bad")
    shutil.copy(d / "good" / "v0.mp4", d / "bad" / "v2_truncated.mp4")
    truncate_file(d / "bad" / "v2_truncated.mp4", 0.5)
    return d


def test_extract_features_command(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    out = tmp_path / "feats"
    args = ["extract-features", "--videos", str(videos / "good"), "--out", str(out), "--visual", "pixels:7",
            "--audio", "logmel", "--set", "batch_size=1"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    assert np.load(out / "visual" / "v0.npy").shape == (2, 6, 7, 7)
    assert np.load(out / "audio" / "v1.npy").shape == (2, 128)
    meta = json.loads((out / "features.json").read_text())
    assert meta["n_extracted"] == 2 and meta["visual"] == "pixels:7"
    res = CliRunner().invoke(_app(), args)  # resumes: nothing to do
    assert res.exit_code == 0, res.output
    assert json.loads((out / "features.json").read_text())["n_existing"] == 2
    res = CliRunner().invoke(_app(), [*args[:5], "--visual", "pixels"])  # other settings, same dir
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_bad_video_is_one_line_and_exit_2(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    monkeypatch.delenv("MM_DEBUG", raising=False)
    out = tmp_path / "feats"
    res = CliRunner().invoke(_app(), ["extract-features", "--videos", str(videos / "bad"), "--out", str(out)])
    assert res.exit_code == 2
    assert "v2_truncated.mp4" in res.output and "Traceback" not in res.output
    assert (out / "visual" / "v0.npy").is_file()  # work done before the bad file is kept
    res = CliRunner().invoke(_app(), ["extract-features", "--videos", str(videos / "bad"), "--out", str(out), "--skip-bad"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "features.json").read_text())
    assert meta["n_bad"] == 1 and meta["bad"][0]["video"] == "v2_truncated.mp4" and meta["n_existing"] == 2


def test_unknown_encoder_and_missing_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MM_DEBUG", raising=False)
    res = CliRunner().invoke(_app(), ["extract-features", "--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "videos directory not found" in res.output
    (tmp_path / "v").mkdir()
    res = CliRunner().invoke(_app(), ["extract-features", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no video files" in res.output


def test_module_imports_nothing_heavy():
    code = ("import sys, mm_cli.avqa_features_cmds; "
            "print(','.join(m for m in ('torch', 'numpy', 'av', 'decord') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
