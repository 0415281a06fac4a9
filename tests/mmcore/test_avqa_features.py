"""AVQAFeatureDataset: ST-AVQA feature layout, segment subsampling, bad / missing .npy files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore.avqa.avqa_yang import load_avqa_yang
from mmcore.avqa.feature_data import AVQAFeatureDataset, segment_indices
from mmcore.avqa.music_avqa import INSTRUMENTS, build_answer_vocab, build_question_vocab, load_music_avqa
from mmcore.errors import DataError
from torch.utils.data import DataLoader

C, H, W = 3, 2, 2


def _ann(vid: str, qid: int, template: str, values: list[str], answer: str, qtype=("Audio", "Counting")) -> dict:
    return {"video_id": vid, "question_id": qid, "type": json.dumps(list(qtype)), "question_content": template,
            "templ_values": json.dumps(values), "question_deleted": 0, "anser": answer}  # fmt: skip


def _features(root: Path, vid: str, t: int = 60, audio_shape=None, visual_shape=None) -> None:
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "visual").mkdir(parents=True, exist_ok=True)
    # Value = time step, so the subsampled steps can be read back from the tensors.
    a = np.broadcast_to(np.arange(t, dtype=np.float32)[:, None], (t, 128)).copy()
    v = np.broadcast_to(np.arange(t, dtype=np.float32)[:, None, None, None], (t, C, H, W)).copy()
    a = a if audio_shape is None else np.ones(audio_shape, np.float32)  # deliberately wrong shapes
    v = v if visual_shape is None else np.ones(visual_shape, np.float32)
    np.save(root / "audio" / f"{vid}.npy", a)
    np.save(root / "visual" / f"{vid}.npy", v)


@pytest.fixture
def data(tmp_path):
    anns = [
        _ann("v1", 1, "Is there a <Object> sound?", ["violin"], "yes"),
        _ann("v1", 2, "How many musical instruments were heard throughout the video?", [], "two"),
        _ann("v2", 3, "What is the <TH> instrument that comes in?", ["first"], "piano", ("Audio-Visual", "Temporal")),
    ]
    p = tmp_path / "avqa-train.json"
    p.write_text(json.dumps(anns))
    qs = load_music_avqa(p)
    root = tmp_path / "feats"
    _features(root, "v1")
    _features(root, "v2", t=10)
    return qs, root, build_question_vocab(qs), build_answer_vocab(qs), tmp_path


def test_segment_indices():
    assert segment_indices(60, 10).tolist() == list(range(0, 60, 6))  # ST-AVQA: every 6th of 60
    assert segment_indices(10, 10).tolist() == list(range(10))
    assert segment_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]


def test_items_shapes_and_content(data):
    qs, root, qv, av, _ = data
    ds = AVQAFeatureDataset(qs, root, qv, av, n_segments=10)
    assert len(ds) == 3 and ds.skipped == 0 and ds.visual_shape == (C, H, W)
    it = ds[0]
    assert it["audio"].shape == (10, 128) and it["audio"].dtype == torch.float32
    assert it["visual"].shape == (10, C, H, W)
    assert it["audio"][:, 0].tolist() == list(range(0, 60, 6))
    assert it["question"].dtype == torch.long and it["question"].shape == (14,)
    assert [qv.tokens[i] for i in it["question"] if i != 0] == ["Is", "there", "a", "violin", "sound"]
    assert av.tokens[int(it["answer"])] == "yes" and it["type_key"] == "A-Count"
    assert it["video_id"] == "v1" and it["question_id"] == 1
    assert it["sources"].shape == (22,) and it["sources"][INSTRUMENTS.index("violin")] == 1
    assert ds[2]["sources"][INSTRUMENTS.index("piano")] == 1 and ds[2]["audio"][:, 0].tolist() == list(range(10))
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["visual"].shape == (3, 10, C, H, W) and batch["type_key"][2] == "AV-Temp"
    cached = AVQAFeatureDataset(qs, root, qv, av, cache=True)
    assert torch.equal(cached[1]["visual"], ds[1]["visual"]) and torch.equal(cached[1]["visual"], ds[1]["visual"])


def test_missing_and_badly_shaped_features(data):
    qs, root, qv, av, tmp = data
    (root / "visual" / "v2.npy").unlink()
    with pytest.raises(DataError, match=r"visual/v2\.npy: visual feature file not found"):
        AVQAFeatureDataset(qs, root, qv, av)
    _features(root, "v2", audio_shape=(60, 64))
    with pytest.raises(DataError, match=r"audio/v2\.npy: audio features must have shape \[T, 128\], got \[60, 64\]"):
        AVQAFeatureDataset(qs, root, qv, av)
    _features(root, "v2", visual_shape=(60, C, H))
    with pytest.raises(DataError, match=r"visual/v2\.npy: visual features must have shape \[T, C, H, W\]"):
        AVQAFeatureDataset(qs, root, qv, av)
    _features(root, "v2", visual_shape=(60, C + 1, H, W))
    with pytest.raises(DataError, match=r"v2\.npy: visual feature grid \[4, 2, 2\] differs"):
        AVQAFeatureDataset(qs, root, qv, av)
    (root / "audio" / "v2.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"audio/v2\.npy: not a readable \.npy"):
        AVQAFeatureDataset(qs, root, qv, av)
    ds = AVQAFeatureDataset(qs, root, qv, av, skip_bad=True)
    assert len(ds) == 2 and ds.skipped == 1 and ds.bad_videos == ["v2"] and "v2.npy" in ds.problems[0]
    with pytest.raises(DataError, match="feature root not found"):
        AVQAFeatureDataset(qs, tmp / "nope", qv, av)


def test_unseen_answer_and_escaping_ids(data):
    qs, root, qv, av, tmp = data
    p = tmp / "avqa-test.json"
    p.write_text(json.dumps([_ann("v1", 9, "Is there a <Object> sound?", ["tuba"], "maybe"),
                             _ann("v2", 10, "Is there a <Object> sound?", ["tuba"], "yes")]))  # fmt: skip
    test = load_music_avqa(p)
    with pytest.raises(DataError, match=r"avqa-test\.json: question 9: answer 'maybe' never occurs in the training"):
        AVQAFeatureDataset(test, root, qv, av)
    ds = AVQAFeatureDataset(test, root, qv, av, skip_bad=True)
    assert len(ds) == 1 and ds.skipped == 1 and ds[0]["question_id"] == 10
    # Question words unseen in training map to <unk> rather than failing.
    assert qv.unk_index in ds[0]["question"].tolist()
    p.write_text(json.dumps([_ann("../../etc/x", 11, "Is there a voiceover?", [], "yes")]))
    with pytest.raises(DataError, match="escapes the data root"):
        AVQAFeatureDataset(load_music_avqa(p), root, qv, av)


def test_avqa_yang_multiple_choice(tmp_path):
    entry = {"id": 5, "video_name": "clipA", "video_id": 7, "question_text": "What makes the sound?",
             "multi_choice": ["dog", "car", "bird", "wind"], "answer": 2, "question_type": "Come From"}  # fmt: skip
    p = tmp_path / "yang.json"
    p.write_text(json.dumps([entry]))
    qs = load_avqa_yang(p)
    _features(tmp_path / "f", "clipA", t=20)
    from mmcore.avqa.music_avqa import PAD, UNK, Vocab

    words = sorted({w for q in qs for w in q.words + sum(q.choice_words, [])})
    qv = Vocab([PAD, UNK, *words])
    ds = AVQAFeatureDataset(qs, tmp_path / "f", qv, None, multiple_choice=True, max_question_len=6)
    it = ds[0]
    assert int(it["answer"]) == 2 and it["choices"].shape == (4, 6) and it["video_id"] == "clipA"
    assert qv.tokens[int(it["choices"][2, 0])] == "bird" and it["sources"].sum() == 0
    assert it["audio"][:, 0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_batches_built_in_workers_equal_those_built_here(data):
    # the SaSR-Net training batches (features, collation, negative frames drawn from per-step seeds)
    import torch
    from mmcore.avqa.feature_data import planned_batches
    from sasrnet.recipes.train import batch_with_negatives

    qs, root, qv, av, _ = data
    ds = AVQAFeatureDataset(qs, root, qv, av, n_segments=10)
    videos = ["v1", "v2"]
    plans = [(ds, [0, 2], videos, [11, 12]), (ds, [1], videos, [13]), (ds, [2, 1, 0], videos, [7, 8, 9])]
    here = list(planned_batches(batch_with_negatives, plans, num_workers=0))
    there = list(planned_batches(batch_with_negatives, plans, num_workers=2))
    assert len(here) == len(there) == 3
    for a, b in zip(here, there, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], torch.Tensor):
                assert torch.equal(a[k], b[k]), k
            else:
                assert a[k] == b[k], k
    assert not torch.equal(here[0]["audio"], here[1]["audio"])  # different plans, different batches
