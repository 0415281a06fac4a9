"""mmcore.media: frame sampling identical across decord and PyAV, audio decoding, log-mel, bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from mmcore import media
from mmcore.errors import DataError, MMError

FPS, N_FRAMES, H, W, SR = 4, 24, 48, 64, 16000  # 6 s clips


def coded_frames() -> np.ndarray:
    """Frame i is uniformly grey at level 10 * i, so a decoded frame tells which index it was."""
    levels = (10 * np.arange(N_FRAMES)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (N_FRAMES, H, W, 3)).copy()


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    good = media.write_video(d / "good.mp4", coded_frames(), FPS, audio=tone(N_FRAMES / FPS), sample_rate=SR)
    silent = media.write_video(d / "no_audio.mp4", coded_frames(), FPS)
    trunc = media.truncate_file(shutil.copy(good, d / "truncated.mp4"), 0.5)
    fast = media.write_video(d / "fast.mp4", coded_frames(), FPS, audio=tone(N_FRAMES / FPS), faststart=True)
    trunc_fast = media.truncate_file(shutil.copy(fast, d / "truncated_faststart.mp4"), 0.5)
    junk = d / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 20)
    return {"good": good, "silent": silent, "trunc": trunc, "trunc_fast": trunc_fast, "junk": junk, "dir": d}


def frame_ids(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 10)) for f in frames]


def test_video_info(clips):
    info = media.video_info(clips["good"])
    assert info["n_frames"] == N_FRAMES and info["fps"] == pytest.approx(FPS)
    assert info["duration_s"] == pytest.approx(N_FRAMES / FPS, abs=0.3)
    assert (info["width"], info["height"]) == (W, H)
    assert info["has_audio"] and not media.video_info(clips["silent"])["has_audio"]


def test_sample_indices_are_step_centres():
    # 4 fps, 24 frames = 6 s; 1 fps → centres 0.5, 1.5, ... s → frames 2, 6, 10, ...
    assert media.sample_indices(24, 4.0, fps=1.0) == [2, 6, 10, 14, 18, 22]
    assert media.sample_indices(24, 4.0, num_frames=3) == [4, 12, 20]
    assert media.sample_indices(5, 4.0) == [0, 1, 2, 3, 4]
    # higher step rate than the video: indices repeat, never run past the end
    idx = media.sample_indices(6, 2.0, fps=5.0)
    assert len(idx) == 15 and max(idx) == 5 and idx == sorted(idx)
    with pytest.raises(MMError):
        media.sample_indices(24, 4.0, fps=1.0, num_frames=3)


@pytest.mark.skipif(not media.decord_available(), reason="decord not installed")
@pytest.mark.parametrize("request_kw", [{"fps": 1.0}, {"num_frames": 5}, {}], ids=["fps1", "num5", "all"])
def test_decord_and_pyav_return_the_same_frames(clips, request_kw):
    a = media.read_frames(clips["good"], backend="decord", **request_kw)
    b = media.read_frames(clips["good"], backend="pyav", **request_kw)
    assert a.dtype == np.uint8 and a.shape[1:] == (H, W, 3)
    np.testing.assert_array_equal(a, b)
    expected = media.sample_indices(N_FRAMES, FPS, fps=request_kw.get("fps"), num_frames=request_kw.get("num_frames"))
    assert frame_ids(a) == expected  # the decoded pixels are really the requested frames


def test_auto_backend_and_resize(clips):
    x = media.read_frames(clips["good"], fps=1.0, size=(32, 48))  # a size decord's own resizer fails on
    assert x.shape == (6, 32, 48, 3) and x.dtype == np.uint8
    assert frame_ids(x) == [2, 6, 10, 14, 18, 22]
    y = media.read_frames(clips["good"], fps=1.0, size=(32, 48), backend="pyav")
    np.testing.assert_array_equal(x, y)


def test_read_audio_tone(clips):
    w = media.read_audio(clips["good"])
    assert w.dtype == np.float32 and w.ndim == 1
    assert abs(len(w) / SR - N_FRAMES / FPS) < 0.1
    assert 0.4 < np.abs(w).max() <= 1.0
    spectrum = np.abs(np.fft.rfft(w[SR:3 * SR]))
    assert np.argmax(spectrum) / 2 == pytest.approx(440, abs=2)  # 2 s window → 0.5 Hz bins
    w8 = media.read_audio(clips["good"], sample_rate=8000)
    assert abs(len(w8) - len(w) / 2) < 1100  # resampled by FFmpeg; AAC framing may add a frame
    assert media.read_audio(clips["good"], mono=False).ndim == 2


def test_log_mel(clips):
    w = media.read_audio(clips["good"])
    lm = media.log_mel(w, SR, 64)
    assert lm.shape[0] == 64 and abs(lm.shape[1] - len(w) / 160) <= 2
    assert bool(lm.isfinite().all())
    silence = media.log_mel(np.zeros(SR, np.float32), SR, 64)
    band = lm[:, 10:-10].mean(1)  # away from the AAC onset/offset
    # 440 Hz on the HTK mel scale is 550 of 2840 mel → band ~11.6 of 64 bands (0-8 kHz)
    assert int(band.argmax()) in (10, 11, 12, 13)
    assert band.max() > silence.max() + 10


def test_missing_file():
    with pytest.raises(DataError, match="file not found") as e:
        media.read_frames("/nonexistent/x.mp4")
    assert str(e.value.path) == "/nonexistent/x.mp4"
    with pytest.raises(DataError, match="file not found"):
        media.read_audio("/nonexistent/x.mp4")


def test_no_audio_stream(clips):
    with pytest.raises(DataError, match="no audio stream") as e:
        media.read_audio(clips["silent"])
    assert e.value.path == clips["silent"]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("which", ["trunc", "trunc_fast", "junk"])
def test_bad_video_raises_data_error(clips, backend, which):
    if backend == "decord" and not media.decord_available():
        pytest.skip("decord not installed")
    with pytest.raises(DataError) as e:
        media.read_frames(clips[which], fps=1.0, backend=backend)
    assert e.value.path == clips[which]


def test_truncated_audio_raises_data_error(clips):
    with pytest.raises(DataError):
        media.read_audio(clips["trunc"])


def test_bad_options(clips):
    with pytest.raises(MMError, match="unknown video backend"):
        media.read_frames(clips["good"], backend="ffmpeg")
    with pytest.raises(MMError, match="size"):
        media.read_frames(clips["good"], size=(0, 10))


def test_installed_decord_wheel_tag_matches_interpreter():
    # A WHEEL file whose Tag disagrees with the interpreter makes uv reinstall the package on
    # every `uv run` (upstream decord 0.6.0 says cp36 inside a py3 wheel).
    import importlib.metadata
    import sys

    try:
        dist = importlib.metadata.distribution("eva-decord")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("decord is only a dependency on Linux x86_64")
    tags = [line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag:")]
    python_tags = {tag.split("-")[0] for tag in tags}
    assert python_tags & {"py3", f"cp3{sys.version_info.minor}"}, tags
