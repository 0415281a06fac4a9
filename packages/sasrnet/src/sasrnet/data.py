"""Input pipeline shared by SaSR-Net, AVST and the question-only model.

A data directory (the output of ``mm avqa synth`` + ``mm avqa extract-features``) holds
``annotations/avqa-{train,val,test}.json`` and ``features/`` in the ST-AVQA layout
(``features/audio/<vid>.npy`` [T,128], ``features/visual/<vid>.npy`` [T,C,H,W]). Real Music-AVQA
is given by explicit annotation files and a feature root instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.errors import DataError, MMError


@dataclass
class DataPaths:
    train_ann: Path | None
    val_ann: Path | None
    test_ann: Path | None
    features: Path


def data_paths(
    data: str | Path | DataPaths | None = None,
    *,
    train_ann: str | Path | None = None,
    val_ann: str | Path | None = None,
    test_ann: str | Path | None = None,
    features: str | Path | None = None,
) -> DataPaths:
    """Resolve a data dir and/or explicit files (explicit ones win)."""
    if isinstance(data, DataPaths):
        return data
    root = Path(data) if data is not None else None
    if root is not None and not root.is_dir():
        raise DataError(root, "data directory not found")

    def pick(explicit: str | Path | None, rel: str) -> Path | None:
        if explicit is not None:
            return Path(explicit)
        if root is not None and (root / rel).is_file():
            return root / rel
        return None

    feats = Path(features) if features is not None else (root / "features" if root is not None else None)
    if feats is None:
        raise MMError("no features given: pass --data DIR (with DIR/features) or --features DIR")
    if not feats.is_dir():
        raise DataError(feats, "feature directory not found (expected audio/ and visual/ inside; "
                               "run `mm avqa extract-features`)")
    return DataPaths(
        pick(train_ann, "annotations/avqa-train.json"),
        pick(val_ann, "annotations/avqa-val.json"),
        pick(test_ann, "annotations/avqa-test.json"),
        feats,
    )


def load_questions(path: Path, *, multiple_choice: bool = False, skip_bad: bool = False):
    if multiple_choice:
        from mmcore.avqa.avqa_yang import load_avqa_yang

        return load_avqa_yang(path, skip_bad=skip_bad)
    from mmcore.avqa.music_avqa import load_music_avqa

    return load_music_avqa(path, skip_bad=skip_bad)


def build_vocabs(train_questions: list, multiple_choice: bool = False):
    """Question vocabulary (plus choice words for multiple choice) and answer vocabulary, from TRAIN."""
    from mmcore.avqa.music_avqa import PAD, UNK, Vocab, build_answer_vocab, build_question_vocab

    if multiple_choice:
        words = sorted({w for q in train_questions for w in [*q.words, *(x for c in q.choice_words for x in c)]})
        qv = Vocab([PAD, UNK, *words], kind="question")
        av = Vocab([str(i) for i in range(4)], kind="answer")  # the index of the correct choice (logits are per choice)
        return qv, av
    return build_question_vocab(train_questions), build_answer_vocab(train_questions)


def feature_dataset(questions, features: Path, qv, av, *, n_segments: int, max_question_len: int,
                    skip_bad: bool, multiple_choice: bool, cache: bool = False, unseen_answers: str = "error"):
    from mmcore.avqa.feature_data import AVQAFeatureDataset

    return AVQAFeatureDataset(questions, features, qv, av, n_segments=n_segments, max_question_len=max_question_len,
                              skip_bad=skip_bad, multiple_choice=multiple_choice, cache=cache,
                              unseen_answers=unseen_answers)


def collate(items: list[dict], noise_seeds: list[int] | None = None, visual_neg: Any = None) -> dict:
    """Stack items. Several questions about one video carry its features once: ``audio`` / ``visual`` are
    stacked per distinct video (first-appearance order) and ``video_index[i]`` is item i's row, so the
    model computes everything that does not depend on the question once per video. ``noise_seeds`` (per
    item) and ``visual_neg`` (per distinct video, [U, T, C, H, W]: see :func:`negative_frames`) are per row."""
    import torch

    batch: dict[str, Any] = {}
    per_video = ("audio", "visual")
    rows: dict[str, int] = {}
    first: list[int] = []
    if "audio" in items[0]:
        for i, it in enumerate(items):
            if it["video_id"] not in rows:
                rows[it["video_id"]] = len(first)
                first.append(i)
        batch["video_index"] = torch.tensor([rows[it["video_id"]] for it in items], dtype=torch.long)
    for k, v in items[0].items():
        if k in per_video and first:
            batch[k] = torch.stack([items[i][k] for i in first])
        elif isinstance(v, torch.Tensor):
            batch[k] = torch.stack([it[k] for it in items])
        elif isinstance(v, int | float) and not isinstance(v, bool):
            batch[k] = torch.tensor([it[k] for it in items])
        else:
            batch[k] = [it[k] for it in items]
    if visual_neg is not None:
        batch["visual_neg"] = torch.as_tensor(visual_neg)
    if noise_seeds is not None:
        batch["noise_seed"] = torch.tensor([noise_seeds[i] for i in first] if first else noise_seeds, dtype=torch.long)
    return batch


NEGATIVE_KINDS = ("shuffled", "coherent")  # TrainConfig.negatives


def negative_frames(ds: Any, row_keys: list[str], videos: list[str], draw_seeds: list[int],
                    kind: str = "shuffled") -> Any:
    """The match loss's negatives for each video of a batch (its feature key in ``row_keys``), from the
    other videos of ``videos``. ``"shuffled"`` (as the public code draws them): each of its T segments is
    replaced by a frame of another video (uniform over the other videos, then over that video's
    segments). ``"coherent"``: all T frames of one other video (uniform), in their order. ``draw_seeds[u]``
    seeds row u's draw, so the negatives do not depend on how a batch is split over processes."""
    import random

    import numpy as np
    import torch

    if kind not in NEGATIVE_KINDS:
        raise MMError(f"unknown negatives {kind!r} ({' | '.join(NEGATIVE_KINDS)})")
    if len(videos) < 2:
        raise MMError("the match loss needs at least 2 training videos (negatives come from other videos)")
    number = {v: i for i, v in enumerate(videos)}

    def other_video(rng: random.Random, own: int | None) -> np.ndarray:
        j = rng.randrange(len(videos) - (own is not None))
        return ds.video_features(videos[j + (own is not None and j >= own)])[1]

    out = []
    for key, seed in zip(row_keys, draw_seeds, strict=True):
        rng = random.Random(seed)
        own = number.get(key)  # None: a video outside ``videos`` (e.g. validation), any of them will do
        t = ds.video_features(key)[1].shape[0]
        if kind == "coherent":
            out.append(other_video(rng, own)[:t])  # every video has the same T segments (fit at extraction)
        else:
            out.append(np.stack([(o := other_video(rng, own))[rng.randrange(o.shape[0])] for _ in range(t)]))
    return torch.from_numpy(np.stack(out))


def to_device(batch: dict, device: Any) -> dict:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def input_statistics(ds: Any, max_videos: int = 512) -> dict[str, Any]:
    """Per-channel mean and std of the audio [A] and visual [C] features of up to ``max_videos`` distinct
    videos of ``ds`` (the training set; evenly spread, deterministic). The model standardises its inputs
    with them, and they are saved with its weights, so evaluation and prediction use the same ones."""

    first: dict[str, int] = {}
    for i, q in enumerate(ds.questions):
        first.setdefault(getattr(q, "video_name", None) or q.video_id, i)
    idx = list(first.values())
    if len(idx) > max_videos:
        idx = [idx[(k * len(idx)) // max_videos] for k in range(max_videos)]
    a_sum = a_sq = v_sum = v_sq = None
    n_a = n_v = 0
    for i in idx:
        it = ds[i]
        a = it["audio"].double().reshape(-1, it["audio"].shape[-1])  # [T, A]
        v = it["visual"].double().transpose(0, 1).flatten(1).T  # [T*H*W, C]
        a_sum = a.sum(0) + (0 if a_sum is None else a_sum)
        a_sq = (a * a).sum(0) + (0 if a_sq is None else a_sq)
        v_sum = v.sum(0) + (0 if v_sum is None else v_sum)
        v_sq = (v * v).sum(0) + (0 if v_sq is None else v_sq)
        n_a, n_v = n_a + len(a), n_v + len(v)
    a_mean, v_mean = a_sum / n_a, v_sum / n_v
    a_std = (a_sq / n_a - a_mean**2).clamp_min(0).sqrt()
    v_std = (v_sq / n_v - v_mean**2).clamp_min(0).sqrt()
    return {"audio_mean": a_mean.float(), "audio_std": a_std.float(), "visual_mean": v_mean.float(),
            "visual_std": v_std.float(), "videos": len(idx)}
