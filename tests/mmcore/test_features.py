"""mmcore.avqa.feature_extraction.extract_features: ST-AVQA layout, step alignment, resume, bad videos, interrupted runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from mmcore import media
from mmcore.avqa import feature_extraction as features
from mmcore.errors import DataError, MMError

FPS, SECONDS, SR = 4, 3, 16000


def write_clip(path, seed: int, audio: bool = True, seconds: int = SECONDS):
    rng = np.random.default_rng(seed)
    n = FPS * seconds
    frames = np.zeros((n, 48, 64, 3), np.uint8)
    frames[..., seed % 3] = (np.arange(n) * 255 // n)[:, None, None]  # brightening colour, differs per clip
    frames[:, :, 40:, :] = rng.integers(0, 255, 3, dtype=np.uint8)
    t = np.arange(seconds * SR) / SR
    wave = (0.4 * np.sin(2 * np.pi * (300 + 100 * seed) * t) * (t > 1.0)).astype(np.float32)
    return media.write_video(path, frames, FPS, audio=wave if audio else None, sample_rate=SR)


@pytest.fixture(scope="module")
def video_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    good = root / "good"
    for i in range(2):
        write_clip(good / f"clip{i}.mp4", i)
    mixed = root / "mixed"
    shutil.copytree(good, mixed)
    write_clip(mixed / "noaudio.mp4", 5, audio=False)
    shutil.copy(good / "clip0.mp4", mixed / "truncated.mp4")
    media.truncate_file(mixed / "truncated.mp4", 0.4)
    return {"good": good, "mixed": mixed}


def test_layout_shapes_and_metadata(video_dirs, tmp_path):
    out = tmp_path / "feats"
    meta = features.extract_features(video_dirs["good"], out, progress=False)
    for vid in ("clip0", "clip1"):
        a, v = features.load_video_features(out, vid)
        assert a.shape == (SECONDS, 128) and a.dtype == np.float32
        assert v.shape == (SECONDS, 6, 14, 14) and v.dtype == np.float32
    # frames brighten over time, so later steps have larger mean colour in the first column
    _, v0 = features.load_video_features(out, "clip0")
    assert v0[0, 0].mean() < v0[1, 0].mean() < v0[2, 0].mean()
    # the tone starts after 1 s: the last second is louder than the first
    a0, _ = features.load_video_features(out, "clip0")
    assert a0[2, :64].max() > a0[0, :64].max() + 5
    on_disk = __import__("json").loads((out / "features.json").read_text())
    assert on_disk == meta
    assert meta["complete"] and meta["n_videos"] == 2 and meta["n_extracted"] == 2 and meta["n_bad"] == 0
    assert meta["visual_shape"] == [6, 14, 14] and meta["audio_dim"] == 128 and meta["steps_max"] == SECONDS


def test_pyav_backend_gives_the_same_features(video_dirs, tmp_path):
    if not media.decord_available():
        pytest.skip("decord not installed")
    features.extract_features(video_dirs["good"], tmp_path / "a", backend="decord", progress=False)
    features.extract_features(video_dirs["good"], tmp_path / "b", backend="pyav", progress=False)
    for vid in ("clip0", "clip1"):
        for x, y in zip(features.load_video_features(tmp_path / "a", vid), features.load_video_features(tmp_path / "b", vid), strict=True):
            np.testing.assert_array_equal(x, y)


def test_fixed_steps_pad_by_repeating_the_last(video_dirs, tmp_path):
    meta = features.extract_features(video_dirs["good"], tmp_path / "f", n_steps=5, batch_size=2, progress=False)
    a, v = features.load_video_features(tmp_path / "f", "clip1")
    assert a.shape == (5, 128) and v.shape == (5, 6, 14, 14)
    np.testing.assert_array_equal(v[3], v[2])
    np.testing.assert_array_equal(v[4], v[2])
    np.testing.assert_array_equal(a[4], a[2])
    assert not np.array_equal(v[1], v[2])
    assert meta["steps_min"] == meta["steps_max"] == 5


def test_two_steps_per_second(video_dirs, tmp_path):
    features.extract_features(video_dirs["good"], tmp_path / "f", fps=2.0, visual="pixels:4", progress=False)
    a, v = features.load_video_features(tmp_path / "f", "clip0")
    assert a.shape == (2 * SECONDS, 128) and v.shape == (2 * SECONDS, 6, 4, 4)


def test_bad_video_stops_the_run_and_names_the_file(video_dirs, tmp_path):
    out = tmp_path / "f"
    with pytest.raises(DataError) as e:
        features.extract_features(video_dirs["mixed"], out, progress=False)
    assert e.value.path.name == "noaudio.mp4" and "no audio stream" in e.value.problem
    # the videos before it are kept (sorted order: clip0, clip1, noaudio, truncated)
    assert sorted(p.name for p in (out / "visual").iterdir()) == ["clip0.npy", "clip1.npy"]


def test_skip_bad_counts_bad_videos_and_resumes(video_dirs, tmp_path):
    out = tmp_path / "f"
    meta = features.extract_features(video_dirs["mixed"], out, skip_bad=True, progress=False)
    assert meta["n_bad"] == 2 and meta["n_extracted"] == 2
    bad = {b["video"]: b["error"] for b in meta["bad"]}
    assert bad["noaudio.mp4"] == "no audio stream"
    assert "truncated.mp4" in bad
    stamp = (out / "visual" / "clip0.npy").stat().st_mtime_ns
    again = features.extract_features(video_dirs["mixed"], out, skip_bad=True, progress=False)
    assert again["n_existing"] == 2 and again["n_extracted"] == 0 and again["n_bad"] == 2
    assert (out / "visual" / "clip0.npy").stat().st_mtime_ns == stamp  # not recomputed


def test_resume_after_an_interrupted_run(video_dirs, tmp_path, monkeypatch):
    out = tmp_path / "f"
    real_encode = features._encode
    calls = {"n": 0}

    def dying_encode(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # stands in for a kill between two videos
        return real_encode(*args, **kw)

    monkeypatch.setattr(features, "_encode", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        features.extract_features(video_dirs["good"], out, progress=False)
    assert sorted(p.name for p in (out / "visual").iterdir()) == ["clip0.npy"]  # no half or temporary file
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["clip0.npy"]
    monkeypatch.setattr(features, "_encode", real_encode)
    meta = features.extract_features(video_dirs["good"], out, progress=False)
    assert meta["n_existing"] == 1 and meta["n_extracted"] == 1 and meta["n_done"] == 2


def test_output_dir_rules(video_dirs, tmp_path):
    out = tmp_path / "f"
    features.extract_features(video_dirs["good"], out, progress=False)
    with pytest.raises(MMError, match="visual='pixels'.*--overwrite"):
        features.extract_features(video_dirs["good"], out, visual="pixels:7", progress=False)
    meta = features.extract_features(video_dirs["good"], out, visual="pixels:7", overwrite=True, progress=False)
    assert meta["n_extracted"] == 2 and meta["visual_shape"] == [6, 7, 7]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MMError, match="not empty"):
        features.extract_features(video_dirs["good"], other, progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_listing_videos(video_dirs, tmp_path):
    synth = tmp_path / "synth"
    shutil.copytree(video_dirs["good"], synth / "videos")  # `mm avqa synth` layout
    assert [p.name for p in features.list_videos(synth)] == ["clip0.mp4", "clip1.mp4"]
    with pytest.raises(DataError, match="not found"):
        features.list_videos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video files"):
        features.list_videos(tmp_path / "empty")


def test_load_video_features_errors(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "visual").mkdir()
    with pytest.raises(DataError, match="audio feature file not found"):
        features.load_video_features(tmp_path, "x")
    np.save(tmp_path / "audio" / "x.npy", np.zeros((3, 128), np.float32))
    np.save(tmp_path / "visual" / "x.npy", np.zeros((3, 6, 14), np.float32))
    with pytest.raises(DataError, match="expected a 4-D visual array") as e:
        features.load_video_features(tmp_path, "x")
    assert e.value.path == tmp_path / "visual" / "x.npy"


def test_decoding_workers_give_the_same_features_and_errors(video_dirs, tmp_path):
    features.extract_features(video_dirs["good"], tmp_path / "w0", num_workers=0, progress=False)
    features.extract_features(video_dirs["good"], tmp_path / "w2", num_workers=2, progress=False)
    for vid in ("clip0", "clip1"):
        for x, y in zip(features.load_video_features(tmp_path / "w0", vid),
                        features.load_video_features(tmp_path / "w2", vid), strict=True):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(DataError) as e:  # a worker's failure names the file, as in this process
        features.extract_features(video_dirs["mixed"], tmp_path / "bad", num_workers=2, progress=False)
    assert e.value.path.name == "noaudio.mp4" and "no audio stream" in e.value.problem
