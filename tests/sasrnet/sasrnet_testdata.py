"""Test data for the sasrnet tests: a tiny Music-AVQA-format data dir with random ST-AVQA-layout
features (no video decoding), and a tiny training config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEMPLATES = [
    (["Audio", "Counting"], "How many instruments are sounding in the video?", [], ["one", "two", "three"]),
    (["Visual", "Location"], "Where is the <Object>?", ["piano"], ["left", "right", "middle"]),
    (["Audio-Visual", "Existential"], "Is the <Object> in the video always playing?", ["cello"], ["yes", "no"]),
    (["Audio-Visual", "Temporal"], "Which <Object> makes the sound <FL>?", ["instrument", "first"],
     ["piano", "cello"]),
]


def make_avqa_dir(root: Path, n_videos: int = 18, seed: int = 0, t: int = 6, c: int = 8, hw: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    (root / "features" / "audio").mkdir(parents=True)
    (root / "features" / "visual").mkdir(parents=True)
    (root / "annotations").mkdir(parents=True)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    qid = 0
    for v in range(n_videos):
        vid = f"{v:08d}"
        split = "train" if v < n_videos * 2 // 3 else ("val" if v % 2 else "test")
        label = int(rng.integers(0, 3))
        audio = rng.normal(size=(t, 128)).astype(np.float32)
        audio[:, label] += 3.0  # a learnable cue
        np.save(root / "features" / "audio" / f"{vid}.npy", audio)
        np.save(root / "features" / "visual" / f"{vid}.npy", rng.normal(size=(t, c, hw, hw)).astype(np.float32))
        for qtype, template, values, answers in TEMPLATES:
            splits[split].append({
                "video_id": vid, "question_id": qid, "type": json.dumps(qtype), "question_content": template,
                "templ_values": json.dumps(values), "question_deleted": 0, "anser": answers[label % len(answers)],
            })
            qid += 1
    for name, qs in splits.items():
        (root / "annotations" / f"avqa-{name}.json").write_text(json.dumps(qs))
    return root


def tiny_config(**kw):
    from sasrnet.config import TrainConfig

    base = dict(size="cpu-tiny", epochs=2, batch_size=8, eval_batch_size=16, lr=1e-3, checkpoint_every_steps=3,
                cache_features=True)
    base.update(kw)
    return TrainConfig(**base)
