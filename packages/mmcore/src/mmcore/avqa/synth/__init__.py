"""A synthetic Music-AVQA-style world: small real mp4 clips plus questions in the real JSON format.

Each clip shows 1–3 instruments (the real 22 names) at left / middle / right over an indoor or
outdoor background, each on a grey plate that lights up (pale yellow) in every frame during which the
instrument sounds (``frames="lit"``, the default since 2026-12-07, decided before any model was trained on
it): the video changes in step with the audio, as a bowed or struck instrument moves while it plays.
``frames="static"`` is the earlier world: one frame repeated, every plate grey, so nothing in the
video tells who is playing when. Every instrument has its own LOOK (one of 8 shapes × one of 11 colours; no two
instruments share both) and its own TIMBRE (fundamental, harmonic tilt, odd-only harmonics,
noise, vibrato, note decay). Each instrument in a clip sounds during one interval of whole seconds
(or stays silent) at its own loudness and note rate; an off-screen instrument may be heard, and a
voiceover may speak. Questions are drawn from the 33 real Music-AVQA templates (exact
``question_content`` strings) with answers computed from the world state, so answering needs
the audio, the video, or both. Yes/no questions pick the wanted answer first (balanced), and
comparisons keep only clear differences (loudness ratio ≥ 1.4, different note rates, durations
≥ 2 s apart).

How the templates are read: "heard" / "sound" (audio questions, "types ... sound") count every
sounding instrument, off-screen ones included; "in the video" counts visible ones only; "did not
sound from beginning to end" = visible but silent the whole clip; "always playing" = sounding
from 0 s to the end; <FL> first/last and <TH> order by onset; <LL> "lowest" = quietest; "on the
<LR> of X" = the nearest visible instrument on that side; "Is this sound from the instrument in
the video?" = no off-screen instrument is heard (a voiceover is not an instrument); "Which <Object>
makes the sound <FL>?" is asked about two of the same instrument (answer: its position, or
"simultaneously" when they start together).

Output (``synthesize``): ``DIR/videos/<id>.mp4`` (H.264 video + AAC 16 kHz mono audio, written
with PyAV), ``DIR/annotations/avqa-{train,val,test}.json`` and ``DIR/world.json`` (ground truth).
Everything is deterministic from the seed (the mp4 bytes are too, for a given PyAV/FFmpeg build).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmcore.avqa.music_avqa import INSTRUMENTS, TYPE_KEY
from mmcore.avqa.synth.questions import TEMPLATES, _draw_questions
from mmcore.avqa.synth.render import FRAME_MODES, render_audio, render_frame, render_frames, write_mp4
from mmcore.avqa.synth.world import POSITIONS, TIMBRES, Source, World, _sample_world, instrument_look
from mmcore.errors import MMError
from mmcore.io import atomic_write_text, write_json

# The package's public names (split into world, questions and render modules; importable from here).
__all__ = ["POSITIONS", "TEMPLATES", "TIMBRES", "Source", "World", "instrument_look", "render_audio", "render_frame",
           "render_frames", "synthesize", "write_mp4"]


# -- top level -----------------------------------------------------------------------------
def _split_of(n_videos: int, seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    n_test, n_val = round(n_videos * test_fraction), round(n_videos * val_fraction)
    if n_videos - n_test - n_val < 1:
        raise MMError(f"{n_videos} videos leave no training videos with val_fraction={val_fraction}, "
                      f"test_fraction={test_fraction}")  # fmt: skip
    order = np.random.default_rng([seed, 1 << 30]).permutation(n_videos)
    split = ["train"] * n_videos
    for i in order[:n_test]:
        split[i] = "test"
    for i in order[n_test : n_test + n_val]:
        split[i] = "val"
    return split


def _world_json(w: World) -> dict[str, Any]:
    return {
        "split": w.split,
        "scene": w.scene,
        "duration": w.duration,
        "voiceover": list(w.voiceover) if w.voiceover else None,
        "sources": [asdict(s) | {"visible": s.position is not None} for s in w.sources],
    }


def synthesize(
    out_dir: str | Path,
    n_videos: int,
    seed: int,
    *,
    duration_s: int = 10,
    fps: int = 4,
    size: tuple[int, int] = (96, 64),
    sample_rate: int = 16000,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    questions_per_video: int = 12,
    frames: str = "lit",
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``n_videos`` synthetic clips with questions into ``out_dir``; returns a summary dict.

    ``size`` is (width, height), both even. Evaluation questions whose answer never occurs in the
    training split are dropped (a model cannot answer them; counted in the summary). ``frames``:
    ``"lit"`` (plates light up while their instrument sounds) or ``"static"`` (the earlier, unchanging frames).
    """
    if frames not in FRAME_MODES:
        raise MMError(f"frames must be one of {', '.join(FRAME_MODES)}, got {frames!r}")
    if n_videos < 1:
        raise MMError(f"--videos must be at least 1, got {n_videos}")
    if duration_s < 3:
        raise MMError(f"duration_s must be at least 3 seconds, got {duration_s}")
    width, height = size
    if width % 6 or height % 2 or width < 48 or height < 32:
        raise MMError(f"size must be (width, height) with width a multiple of 6 (>= 48) and even height "
                      f"(>= 32), got {size}")  # fmt: skip
    t0 = time.perf_counter()
    splits = _split_of(n_videos, seed, val_fraction, test_fraction)  # validates before writing anything
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)

    worlds: list[World] = []
    it: Any = range(n_videos)
    if progress:
        from mmcore.distributed import track

        it = track(it, description="synthesizing videos")
    for i in it:
        rng = np.random.default_rng([seed, i])
        w = _sample_world(rng, f"{i + 1:08d}", splits[i], duration_s)
        w.questions = [
            {"type": t, "template": tpl, "values": vals, "answer": ans}
            for t, tpl, vals, ans in _draw_questions(w, rng, questions_per_video)
        ]
        audio = render_audio(w, sample_rate, rng)
        write_mp4(out / "videos" / f"{w.video_id}.mp4", render_frames(w, size, fps, frames), audio,
                  fps=fps, sample_rate=sample_rate)  # fmt: skip
        worlds.append(w)

    train_answers = {q["answer"] for w in worlds if w.split == "train" for q in w.questions}
    per_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    dropped = 0
    qid = 0
    for w in worlds:
        for q in w.questions:
            if w.split != "train" and q["answer"] not in train_answers:
                dropped += 1
                continue
            per_split[w.split].append({
                "video_id": w.video_id,
                "question_id": qid,
                "type": json.dumps(list(q["type"])),
                "question_content": q["template"],
                "templ_values": json.dumps(q["values"]),
                "question_deleted": 0,
                "anser": q["answer"],
            })  # fmt: skip
            qid += 1
    for split, items in per_split.items():
        atomic_write_text(out / "annotations" / f"avqa-{split}.json", json.dumps(items, indent=1) + "\n")

    all_q = [q for qs in per_split.values() for q in qs]
    summary = {
        "seed": seed,
        "videos": n_videos,
        "videos_per_split": dict(Counter(splits)),
        "questions": len(all_q),
        "questions_per_split": {k: len(v) for k, v in per_split.items()},
        "per_type": dict(Counter(TYPE_KEY[tuple(json.loads(q["type"]))] for q in all_q)),
        "templates_used": len({q["question_content"] for q in all_q}),
        "answers": len({q["anser"] for q in all_q}),
        "dropped_unseen_answers": dropped,
        "duration_s": duration_s,
        "fps": fps,
        "frames": frames,
        "size": list(size),
        "sample_rate": sample_rate,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "world.json", {
        "summary": summary,
        "instruments": {n: {"look": instrument_look(i), "timbre": asdict(TIMBRES[n])} for i, n in enumerate(INSTRUMENTS)},
        "videos": {w.video_id: _world_json(w) for w in worlds},
    })  # fmt: skip
    return summary
