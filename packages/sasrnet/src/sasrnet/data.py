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
        from mmcore.data.avqa_yang import load_avqa_yang

        return load_avqa_yang(path, skip_bad=skip_bad)
    from mmcore.data.music_avqa import load_music_avqa

    return load_music_avqa(path, skip_bad=skip_bad)


def build_vocabs(train_questions: list, multiple_choice: bool = False):
    """Question vocabulary (plus choice words for multiple choice) and answer vocabulary, from TRAIN."""
    from mmcore.data.music_avqa import PAD, UNK, Vocab, build_answer_vocab, build_question_vocab

    if multiple_choice:
        words = sorted({w for q in train_questions for w in [*q.words, *(x for c in q.choice_words for x in c)]})
        qv = Vocab([PAD, UNK, *words], kind="question")
        av = Vocab([str(i) for i in range(4)], kind="answer")  # the index of the correct choice (logits are per choice)
        return qv, av
    return build_question_vocab(train_questions), build_answer_vocab(train_questions)


def feature_dataset(questions, features: Path, qv, av, *, n_segments: int, max_question_len: int,
                    skip_bad: bool, multiple_choice: bool, cache: bool = False):
    from mmcore.data.avqa_features import AVQAFeatureDataset

    return AVQAFeatureDataset(questions, features, qv, av, n_segments=n_segments, max_question_len=max_question_len,
                              skip_bad=skip_bad, multiple_choice=multiple_choice, cache=cache)


def collate(items: list[dict], negatives: list[dict] | None = None, noise_seeds: list[int] | None = None) -> dict:
    """Stack items; ``negatives[i]`` supplies the other-video frames of item i for the match loss."""
    import torch

    batch: dict[str, Any] = {}
    for k, v in items[0].items():
        if isinstance(v, torch.Tensor):
            batch[k] = torch.stack([it[k] for it in items])
        elif isinstance(v, int | float) and not isinstance(v, bool):
            batch[k] = torch.tensor([it[k] for it in items])
        else:
            batch[k] = [it[k] for it in items]
    if negatives is not None:
        batch["visual_neg"] = torch.stack([n["visual"] for n in negatives])
        batch["neg_valid"] = torch.tensor([n["video_id"] != it["video_id"] for n, it in zip(negatives, items, strict=True)])
    if noise_seeds is not None:
        batch["noise_seed"] = torch.tensor(noise_seeds, dtype=torch.long)
    return batch


def to_device(batch: dict, device: Any) -> dict:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def negative_partner(global_batch: list[int], video_ids: list[str]) -> dict[int, int]:
    """For each index of a global batch, the next index in the batch from a different video
    (itself when the whole batch is one video; the loss then masks that pair out). Computed on the
    global batch, so the pairs are the same however the batch is split over processes."""
    out = {}
    n = len(global_batch)
    for j, i in enumerate(global_batch):
        partner = i
        for step in range(1, n):
            cand = global_batch[(j + step) % n]
            if video_ids[cand] != video_ids[i]:
                partner = cand
                break
        out[i] = partner
    return out
