"""The synthetic AVQA world: real mp4 files (decord + PyAV), real JSON format, answers from the world state."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from mmcore.avqa.music_avqa import INSTRUMENTS, TYPE_KEY, load_music_avqa
from mmcore.avqa.synth import (
    POSITIONS,
    TEMPLATES,
    TIMBRES,
    _draw_questions,
    _sample_world,
    instrument_look,
    synthesize,
)
from mmcore.errors import MMError

REAL = Path(os.environ["MM_MUSIC_AVQA_DIR"])  # set by tests/conftest.py
SR, DUR, FPS, SIZE = 16000, 5, 4, (96, 64)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize(out, 8, seed=3, duration_s=DUR, fps=FPS, size=SIZE, progress=False)
    return out, summary, json.loads((out / "world.json").read_text())


def _audio(path: Path) -> tuple[np.ndarray, int, int]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        rate, channels = s.rate, s.codec_context.channels
        x = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    return x, rate, channels


def test_files_and_annotations_in_the_real_format(world):
    out, summary, w = world
    vids = sorted(p.stem for p in (out / "videos").glob("*.mp4"))
    assert vids == sorted(w["videos"]) and len(vids) == 8
    raw = json.loads((out / "annotations" / "avqa-train.json").read_text())
    assert set(raw[0]) == {"video_id", "question_id", "type", "question_content", "templ_values",
                           "question_deleted", "anser"}  # fmt: skip
    assert isinstance(raw[0]["type"], str) and isinstance(raw[0]["templ_values"], str)
    total = 0
    for split in ("train", "val", "test"):
        qs = load_music_avqa(out / "annotations" / f"avqa-{split}.json")
        assert qs.skipped == 0
        assert all(w["videos"][q.video_id]["split"] == split for q in qs)
        total += len(qs)
    assert total == summary["questions"] > 8 * 5
    assert summary["videos_per_split"]["train"] >= 4
    ids = [q["question_id"] for s in ("train", "val", "test")
           for q in json.loads((out / "annotations" / f"avqa-{s}.json").read_text())]  # fmt: skip
    assert len(set(ids)) == len(ids)


def test_videos_decode_with_decord_and_pyav(world):
    import decord

    out, _, w = world
    for vid in list(w["videos"])[:3]:
        path = out / "videos" / f"{vid}.mp4"
        vr = decord.VideoReader(str(path))
        assert len(vr) == DUR * FPS and vr[0].shape == (SIZE[1], SIZE[0], 3)
        assert abs(vr.get_avg_fps() - FPS) < 1e-6
        x, rate, channels = _audio(path)
        assert rate == SR and channels == 1 and x.shape[0] == 1
        assert abs(x.shape[1] - DUR * SR) <= 2048  # AAC priming/padding


def test_audio_follows_the_world(world):
    """Seconds where nothing sounds are near-silent; a sounding source shows up at its timbre's pitch."""
    out, _, w = world
    checked = 0
    for vid, v in w["videos"].items():
        x, _, _ = _audio(out / "videos" / f"{vid}.mp4")
        x = x[0, : DUR * SR]
        active = np.zeros(DUR, bool)
        for s in v["sources"]:
            active[s["onset"] : s["offset"]] = True
        if v["voiceover"]:
            active[v["voiceover"][0] : v["voiceover"][1]] = True
        rms = np.sqrt(np.mean(x[: len(x) // SR * SR].reshape(-1, SR) ** 2, axis=1))
        # Skip one second either side of a change: AAC smears transients over a frame or two.
        for t in range(DUR):
            near = active[max(t - 1, 0) : t + 2]
            if near.all():
                assert rms[t] > 0.01, (vid, t, rms)
            elif not near.any():
                assert rms[t] < 0.01, (vid, t, rms)
        checked += int(active.any() and not active.all())
    assert checked >= 1  # clips with both sounding and silent stretches were exercised


@pytest.mark.parametrize("name", ["drum", "tuba", "cello", "clarinet", "piano", "violin", "xylophone"])
def test_each_timbre_sounds_at_its_pitch_and_loudness(name):
    from mmcore.avqa.synth import Source, World, render_audio

    w = World("x", "train", "indoor", 4, [Source(name, "middle", 1, 3, 0.5, 2)])
    x = render_audio(w, SR, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (4 * SR,)
    seg = x[SR : 3 * SR]
    assert np.sqrt(np.mean(seg**2)) == pytest.approx(0.25 * 0.5, rel=0.05)  # mix scale x loudness
    assert np.sqrt(np.mean(x[: SR // 2] ** 2)) < 0.005  # silent before the onset
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / SR)
    f0 = TIMBRES[name].f0
    harmonic = spec[[int(np.argmin(np.abs(freqs - k * f0))) for k in range(1, 4)]].max()
    assert harmonic > 20 * np.median(spec)  # a pitched component at the instrument's own harmonics


def test_frames_show_each_visible_instrument_in_its_slot(world):
    import decord

    out, _, w = world
    for vid, v in w["videos"].items():
        frame = decord.VideoReader(str(out / "videos" / f"{vid}.mp4"))[DUR * FPS // 2].asnumpy().astype(int)
        slot = SIZE[0] // 3
        for s in v["sources"]:
            if not s["visible"]:
                continue
            x0 = POSITIONS.index(s["position"]) * slot
            region = frame[:, x0 : x0 + slot].reshape(-1, 3)
            _, color = instrument_look(INSTRUMENTS.index(s["instrument"]))
            dist = np.abs(region - np.array(color)).sum(1)
            assert (dist < 60).sum() > 20, (vid, s)


def _plate_pixels(frame: np.ndarray, position: str, plate: tuple[int, int, int]) -> int:
    """Pixels of the slot at ``position`` within a small distance of the plate colour ``plate``."""
    slot = SIZE[0] // 3
    x0 = POSITIONS.index(position) * slot
    region = frame[:, x0 : x0 + slot].reshape(-1, 3).astype(int)
    return int((np.abs(region - np.array(plate)).sum(1) < 45).sum())


def test_plates_light_up_exactly_while_their_instrument_sounds(world):
    import decord
    from mmcore.avqa.synth.render import LIT_PLATE, PLATE

    out, summary, w = world
    assert summary["frames"] == "lit"
    checked = {True: 0, False: 0}
    for vid, v in w["videos"].items():
        vr = decord.VideoReader(str(out / "videos" / f"{vid}.mp4"))
        for k in range(0, DUR * FPS, 2):
            frame = vr[k].asnumpy()
            t = k / FPS
            for s in v["sources"]:
                if not s["visible"]:
                    continue
                lit = s["onset"] <= t < s["offset"]
                on, off = _plate_pixels(frame, s["position"], LIT_PLATE), _plate_pixels(frame, s["position"], PLATE)
                assert (on > 20 and off < 5) if lit else (off > 20 and on < 5), (vid, k, s, on, off)
                checked[lit] += 1
    assert checked[True] > 10 and checked[False] > 10  # both states occur in this world


def test_static_frames_are_one_frame_repeated(tmp_path):
    import decord

    synthesize(tmp_path, 2, seed=3, duration_s=DUR, fps=FPS, size=SIZE, frames="static", progress=False)
    for path in (tmp_path / "videos").glob("*.mp4"):
        frames = decord.VideoReader(str(path)).get_batch(range(DUR * FPS)).asnumpy().astype(int)
        assert np.abs(frames - frames[:1]).max() <= 12  # codec noise only (a lit plate differs by > 100)
    with pytest.raises(MMError, match="frames must be one of"):
        synthesize(tmp_path / "bad", 2, seed=3, frames="moving")


def test_answers_agree_with_the_world(world):
    out, _, w = world
    qs = [q for s in ("train", "val", "test") for q in load_music_avqa(out / "annotations" / f"avqa-{s}.json")]
    nums = ["zero", "one", "two", "three", "four", "five"]
    n_checked = 0
    for q in qs:
        v = w["videos"][q.video_id]
        vis = [s for s in v["sources"] if s["visible"]]
        heard = [s for s in v["sources"] if s["offset"] > s["onset"]]
        t = q.template
        if t == "Where is the performance?":
            assert q.answer == v["scene"]
        elif t == "Is there a voiceover?":
            assert q.answer == ("yes" if v["voiceover"] else "no")
        elif t == "How many instruments are sounding in the video?":
            assert q.answer == nums[sum(s["offset"] > s["onset"] for s in vis)]
        elif t == "How many musical instruments were heard throughout the video?":
            assert q.answer == nums[len(heard)]
        elif t == "Is there a <Object> in the entire video?":
            assert q.answer == ("yes" if q.templ_values[0] in {s["instrument"] for s in vis} else "no")
        elif t == "Is there a <Object> sound?":
            assert q.answer == ("yes" if q.templ_values[0] in {s["instrument"] for s in heard} else "no")
        elif t == "What kind of instrument is the <LRer> instrument? ":
            order = sorted(vis, key=lambda s: POSITIONS.index(s["position"]))
            assert q.answer == order[0 if q.templ_values[0] == "leftest" else -1]["instrument"]
        else:
            continue
        n_checked += 1
    assert n_checked >= 10


def test_deterministic_from_the_seed(tmp_path, world):
    out, summary, w = world
    again = synthesize(tmp_path / "a", 8, seed=3, duration_s=DUR, fps=FPS, size=SIZE, progress=False)
    w2 = json.loads((tmp_path / "a" / "world.json").read_text())
    assert w2["videos"] == w["videos"]
    for s in ("train", "val", "test"):
        name = f"annotations/avqa-{s}.json"
        assert (tmp_path / "a" / name).read_text() == (out / name).read_text()
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in summary.items() if k != "seconds"}
    other = synthesize(tmp_path / "b", 8, seed=4, duration_s=DUR, fps=FPS, size=SIZE, progress=False)
    assert json.loads((tmp_path / "b" / "world.json").read_text())["videos"] != w["videos"]
    assert other["videos"] == 8


def test_bad_arguments(tmp_path):
    with pytest.raises(MMError, match="at least 1"):
        synthesize(tmp_path / "w", 0, seed=0)
    with pytest.raises(MMError, match="multiple of 6"):
        synthesize(tmp_path / "w", 2, seed=0, size=(100, 64))
    with pytest.raises(MMError, match="no training videos"):
        synthesize(tmp_path / "w", 2, seed=0, val_fraction=0.5, test_fraction=0.5)
    assert not (tmp_path / "w").exists()  # nothing written for a rejected request


def test_looks_and_timbres_are_distinct():
    looks = [instrument_look(i) for i in range(len(INSTRUMENTS))]
    assert len(set(looks)) == 22
    assert set(TIMBRES) == set(INSTRUMENTS)
    assert len({(t.f0, t.tilt, t.odd_only, t.noise) for t in TIMBRES.values()}) == 22


@pytest.fixture(scope="module")
def many_questions():
    """Questions of 1000 sampled worlds (no rendering: fast)."""
    qs = []
    for i in range(1000):
        rng = np.random.default_rng([11, i])
        w = _sample_world(rng, f"{i:08d}", "train", 10)
        qs += _draw_questions(w, rng, 12)
    return qs


def test_generator_covers_all_real_templates_and_types(many_questions):
    templates = {tpl for _, tpl, _ in TEMPLATES}
    assert len(templates) == 33
    assert {tpl for _, tpl, _, _ in many_questions} == templates
    assert {t for t, _, _, _ in many_questions} == set(TYPE_KEY)
    if (REAL / "avqa-test.json").is_file():  # exact strings of the real release
        real = {e["question_content"]: json.loads(e["type"]) for f in ("avqa-val.json", "avqa-test.json")
                for e in json.loads((REAL / f).read_text())}  # fmt: skip
        assert {tpl: list(t) for t, tpl, _ in TEMPLATES} == real


def test_questions_are_balanced_enough_for_a_blind_baseline(many_questions):
    by_tpl: dict[str, Counter] = defaultdict(Counter)
    for _, tpl, _, ans in many_questions:
        by_tpl[tpl][ans] += 1
    # The most frequent answer per template (what a question-only model learns at best from the template).
    majority = sum(c.most_common(1)[0][1] for c in by_tpl.values()) / len(many_questions)
    assert majority < 0.55
    for tpl, c in by_tpl.items():
        if set(c) == {"yes", "no"}:
            assert 0.3 < c["yes"] / sum(c.values()) < 0.7, (tpl, c)
    counts = {a for c in by_tpl.values() for a in c if a in ("zero", "one", "two", "three")}
    assert counts == {"zero", "one", "two", "three"}


def test_mpeg4_fallback_without_x264(tmp_path, monkeypatch):
    import av
    import decord
    from mmcore.avqa.synth import write_mp4

    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    path = tmp_path / "clip.mp4"
    frame = np.full((SIZE[1], SIZE[0], 3), 100, np.uint8)
    write_mp4(path, [frame] * (2 * FPS), np.zeros(2 * SR, np.float32), fps=FPS, sample_rate=SR)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4" and c.streams.audio[0].codec_context.name == "aac"
    assert len(decord.VideoReader(str(path))) == 2 * FPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary file left
