"""Rendering a world: its video frames, the mixed audio, and the mp4 file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcore.avqa.music_avqa import INSTRUMENTS
from mmcore.avqa.synth.world import POSITIONS, TIMBRES, Source, World, instrument_look


# -- rendering -----------------------------------------------------------------------------
def _shape_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Boolean [h, w] mask of ``shape`` filling a box."""
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1  # [-1, 1]
    if shape == "disc":
        return u**2 + v**2 <= 1
    if shape == "square":
        return (abs(u) <= 0.85) & (abs(v) <= 0.85)
    if shape == "triangle":
        return (v >= -0.95) & (v <= 0.95) & (abs(u) <= (v + 0.95) / 1.9)
    if shape == "diamond":
        return abs(u) + abs(v) <= 1
    if shape == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1) & (r2 >= 0.3)
    if shape == "cross":
        return ((abs(u) <= 0.3) | (abs(v) <= 0.3)) & (abs(u) <= 0.95) & (abs(v) <= 0.95)
    if shape == "hstripes":
        return (abs(u) <= 0.85) & (abs(v) <= 0.95) & ((y * 4 // h) % 2 == 0)
    if shape == "vstripes":
        return (abs(u) <= 0.95) & (abs(v) <= 0.85) & ((x * 4 // w) % 2 == 0)
    raise ValueError(shape)


# The plate behind an instrument: grey, or lit while the instrument sounds (frames="lit").
PLATE = (128, 128, 128)
LIT_PLATE = (250, 240, 170)
FRAME_MODES = ("lit", "static")


def render_frame(w: World, size: tuple[int, int], t: float | None = None) -> np.ndarray:
    """One RGB frame [H, W, 3]: background scene plus each visible instrument's look on its plate.

    ``t`` (seconds) given: the plate of every visible instrument sounding at ``t`` (onset <= t < offset)
    lights up, so the frames change in step with the audio. ``t=None``: every plate grey (the static frame)."""
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    horizon = int(height * 0.6)
    top, bottom = ((200, 180, 150), (110, 80, 55)) if w.scene == "indoor" else ((135, 190, 235), (80, 150, 70))
    img[:horizon], img[horizon:] = top, bottom
    slot = width // 3
    bw, bh = int(slot * 0.75), int(height * 0.6)
    for s in w.visible:
        i = INSTRUMENTS.index(s.instrument)
        shape, color = instrument_look(i)
        x0 = POSITIONS.index(s.position) * slot + (slot - bw) // 2  # type: ignore[arg-type]
        y0 = (height - bh) // 2 + height // 10
        lit = t is not None and s.onset <= t < s.offset
        # The plate keeps the shape readable on any background colour (and shows who is playing).
        img[y0 - 1 : y0 + bh + 1, x0 - 1 : x0 + bw + 1] = LIT_PLATE if lit else PLATE
        m = _shape_mask(shape, bh, bw)
        img[y0 : y0 + bh, x0 : x0 + bw][m] = color
    return img


def render_frames(w: World, size: tuple[int, int], fps: int, frames: str = "lit") -> list[np.ndarray]:
    """The clip's ``w.duration * fps`` frames: ``"lit"`` (plates light up while their instrument sounds,
    frame k shown at k / fps seconds) or ``"static"`` (one grey-plate frame repeated)."""
    if frames not in FRAME_MODES:
        raise ValueError(f"unknown frames mode {frames!r} ({' | '.join(FRAME_MODES)})")
    n = w.duration * fps
    if frames == "static":
        return [render_frame(w, size)] * n
    by_state: dict[tuple[bool, ...], np.ndarray] = {}  # a frame per distinct set of lit plates
    out = []
    for k in range(n):
        t = k / fps
        key = tuple(s.onset <= t < s.offset for s in w.visible)
        if key not in by_state:
            by_state[key] = render_frame(w, size, t)
        out.append(by_state[key])
    return out


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n)


def _source_signal(s: Source, sr: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(start sample, waveform over the sounding interval) with RMS = ``s.loudness``."""
    tb = TIMBRES[s.instrument]
    a, b = s.onset * sr, s.offset * sr
    t = np.arange(b - a) / sr
    freq_t = 1 + tb.vibrato * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * tb.f0 * np.cumsum(freq_t) / sr
    tone = np.zeros_like(t)
    # sin(k·φ) by the recurrence sin(kφ) = 2cos(φ)·sin((k-1)φ) - sin((k-2)φ): one sin/cos in all.
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros_like(t), np.sin(phase)
    for k in range(1, 13):
        if k * tb.f0 >= sr / 2 * 0.9:
            break
        if not (tb.odd_only and k % 2 == 0):
            tone += k ** (-tb.tilt) * cur
        prev, cur = cur, two_cos * cur - prev
    tone /= np.sqrt(np.mean(tone**2)) + 1e-9
    if tb.noise:
        nz = _band_noise(rng, len(t), sr, tb.f0, min(8 * tb.f0 + 500, sr / 2))
        tone = (1 - tb.noise) * tone + tb.noise * nz / (np.sqrt(np.mean(nz**2)) + 1e-9)
    attack = np.minimum(1.0, t / 0.02)
    release = np.minimum(1.0, (t[-1] - t) / 0.05 + 1e-3)
    if s.rate == 0:
        env = attack * release
    else:
        tau = min(tb.decay, 0.6 / s.rate)
        since = (t % (1.0 / s.rate))  # time since the last note onset
        env = np.minimum(1.0, since / 0.005) * np.exp(-since / tau) * release
    sig = tone * env
    sig *= s.loudness / (np.sqrt(np.mean(sig**2)) + 1e-9)
    return a, sig


def _voice_signal(onoff: tuple[int, int], sr: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """A speech-like voiceover: a 120 Hz buzz through changing vowel formants, in syllables."""
    a, b = onoff[0] * sr, onoff[1] * sr
    n = b - a
    t = np.arange(n) / sr
    f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    vowels = ((700, 1200), (300, 2300), (500, 900))
    out = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(sr * rng.uniform(0.15, 0.3))
        gap = int(sr * rng.uniform(0.03, 0.12))
        f1, f2 = vowels[int(rng.integers(3))]
        seg = slice(pos, min(pos + syl, n))
        for k in range(1, 30):
            fk = k * 120
            amp = np.exp(-(((fk - f1) / 150) ** 2)) + 0.6 * np.exp(-(((fk - f2) / 200) ** 2)) + 0.02
            out[seg] += amp * np.sin(k * phase[seg])
        m = seg.stop - seg.start
        out[seg] *= np.sin(np.pi * np.arange(m) / max(m, 1))  # syllable envelope
        pos += syl + gap
    out *= 0.35 / (np.sqrt(np.mean(out**2)) + 1e-9)
    return a, out


def render_audio(w: World, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 mixture of all heard sources (and the voiceover) over the whole clip."""
    mix = np.zeros(w.duration * sr)
    parts = [_source_signal(s, sr, rng) for s in w.heard]
    if w.voiceover is not None:
        parts.append(_voice_signal(w.voiceover, sr, rng))
    for a, sig in parts:
        mix[a : a + len(sig)] += sig
    mix = 0.25 * mix + 0.002 * rng.standard_normal(len(mix))  # fixed scale keeps relative loudness
    return np.clip(mix, -1, 1).astype(np.float32)


def write_mp4(path: Path, frames: list[np.ndarray], audio: np.ndarray, *, fps: int, sample_rate: int) -> None:
    """Write an mp4 with an H.264 video stream of ``frames`` (RGB [H, W, 3] each) and AAC mono audio."""
    import av

    # The temporary name does not end in .mp4, so a killed run leaves nothing a video lister would pick up.
    tmp = path.with_name(f".{path.name}.part")
    height, width = frames[0].shape[:2]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"  # FFmpeg builds without x264
    with av.open(str(tmp), "w", format="mp4") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "18"} if codec == "libx264" else {"qscale": "3"}
        vs.thread_count = 1  # the machine is shared; tiny frames gain nothing from threads
        aus = c.add_stream("aac", rate=sample_rate, layout="mono")
        aus.options = {"aac_coder": "fast"}  # ~2x faster than the default two-loop search
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        chunk = 1024  # the AAC encoder's frame size
        for k in range(0, len(audio), chunk):
            af = av.AudioFrame.from_ndarray(audio[None, k : k + chunk], format="fltp", layout="mono")
            af.sample_rate, af.pts = sample_rate, k
            for p in aus.encode(af):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)
    tmp.replace(path)  # a killed run never leaves a half-written mp4 under the final name


