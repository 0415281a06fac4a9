"""Pre-extracted audio-visual features for AVQA, in the ST-AVQA layout.

``FEAT_ROOT/audio/<video>.npy`` is a float ``[T, 128]`` array (one vector per second) and
``FEAT_ROOT/visual/<video>.npy`` a float ``[T, C, H, W]`` grid (one map per second). Real Music-AVQA
features have T = 60 and loaders keep every 6th step (10 segments); here any T is subsampled
evenly to ``n_segments``. Music-AVQA features are named by ``video_id``, AVQA-Yang ones by
``video_name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmcore.avqa.avqa_yang import AVQAYangQuestion
from mmcore.avqa.music_avqa import AVQAQuestion, Vocab, sources_multi_hot, video_sources
from mmcore.errors import DataError
from mmcore.io import safe_join

AUDIO_DIM = 128


def segment_indices(t: int, n_segments: int) -> np.ndarray:
    """Evenly spaced indices taking ``n_segments`` of ``t`` steps (60 → 10 gives 0, 6, ..., 54)."""
    if t < 1 or n_segments < 1:
        raise ValueError(f"need t >= 1 and n_segments >= 1, got t={t}, n_segments={n_segments}")
    return (np.arange(n_segments) * t) // n_segments


def _check_shape(path: Path, shape: tuple[int, ...], dtype: np.dtype, kind: str) -> None:
    if not np.issubdtype(dtype, np.floating):
        raise DataError(path, f"{kind} features must be floating point, got dtype {dtype}")
    if kind == "audio" and (len(shape) != 2 or shape[1] != AUDIO_DIM or shape[0] < 1):
        raise DataError(path, f"audio features must have shape [T, {AUDIO_DIM}], got {list(shape)}")
    if kind == "visual" and (len(shape) != 4 or shape[0] < 1 or min(shape) < 1):
        raise DataError(path, f"visual features must have shape [T, C, H, W], got {list(shape)}")


def _open_npy(path: Path, kind: str, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, f"{kind} feature file not found")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError/UnpicklingError for bad files
        raise DataError(path, f"not a readable .npy {kind} feature file ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(path, f"expected a single .npy array, got {type(arr).__name__}")
    _check_shape(path, arr.shape, arr.dtype, kind)
    return arr


class AVQAFeatureDataset(Dataset):
    """AVQA questions paired with their videos' pre-extracted features.

    Each item is a dict: ``audio`` [S, 128] float, ``visual`` [S, C, H, W] float, ``question`` [L]
    long, ``answer`` long (answer-vocabulary index, or the choice index when ``multiple_choice``),
    ``type_key`` str, ``sources`` [22] float multi-hot (see :func:`video_sources`; zeros for
    AVQA-Yang), ``video_id`` str, ``question_id`` int; with ``multiple_choice`` also ``choices``
    [4, L] long.

    Every video's files are checked when the dataset is built (headers only, via mmap): a missing
    or wrongly shaped .npy, or an answer the vocabulary has not seen, raises :class:`DataError`
    naming the file; with ``skip_bad`` those questions are dropped and counted in ``skipped``.
    """

    def __init__(
        self,
        questions: Sequence[AVQAQuestion | AVQAYangQuestion],
        feature_root: str | Path,
        question_vocab: Vocab,
        answer_vocab: Vocab | None,
        *,
        n_segments: int = 10,
        max_question_len: int = 14,
        skip_bad: bool = False,
        multiple_choice: bool = False,
        sources: Mapping[str, Sequence[str]] | None = None,
        cache: bool = False,
        unseen_answers: str = "error",
    ):
        self.root = Path(feature_root)
        if unseen_answers not in ("error", "wrong"):
            raise ValueError(f"unseen_answers must be 'error' or 'wrong', got {unseen_answers!r}")
        # "wrong": a question whose answer never occurs in training stays in the set with answer index -1
        # (no prediction can match it), so accuracies keep every question in the denominator
        self.unseen_answers = unseen_answers
        self.n_unseen_answers = 0
        if not self.root.is_dir():
            raise DataError(self.root, "feature root not found (expected audio/ and visual/ folders inside)")
        if not multiple_choice and answer_vocab is None:
            raise ValueError("answer_vocab is required unless multiple_choice=True")
        self.question_vocab = question_vocab
        self.answer_vocab = answer_vocab
        self.n_segments = n_segments
        self.max_question_len = max_question_len
        self.multiple_choice = multiple_choice
        self.cache = cache
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._checked: set[str] = set()
        self.skipped = 0
        self.problems: list[str] = []
        music = [q for q in questions if isinstance(q, AVQAQuestion)]
        self._sources = dict(sources) if sources is not None else video_sources(music)

        bad_videos: dict[str, str] = {}
        self.visual_shape: tuple[int, int, int] | None = None
        kept: list[AVQAQuestion | AVQAYangQuestion] = []
        for q in questions:
            key = self._feature_key(q)
            try:
                if key in bad_videos:
                    raise DataError(None, bad_videos[key])
                self._check_video(key, bad_videos)
                if not multiple_choice and self._answer_index(q) < 0:
                    self.n_unseen_answers += 1
            except DataError as e:
                if not skip_bad:
                    raise
                self.skipped += 1
                self.problems.append(f"question {q.question_id}: {e}")
                continue
            kept.append(q)
        self.questions = kept
        self.bad_videos = sorted(bad_videos)

    # -- validation -------------------------------------------------------------------------
    def _feature_key(self, q: AVQAQuestion | AVQAYangQuestion) -> str:
        if self.multiple_choice:
            if not isinstance(q, AVQAYangQuestion):
                raise TypeError("multiple_choice=True expects AVQA-Yang questions")
            return q.video_name
        if not isinstance(q, AVQAQuestion):
            raise TypeError("multiple_choice=False expects Music-AVQA questions")
        return q.video_id

    def _paths(self, key: str) -> tuple[Path, Path]:
        return safe_join(self.root, f"audio/{key}.npy"), safe_join(self.root, f"visual/{key}.npy")

    def _check_video(self, key: str, bad: dict[str, str]) -> None:
        if key in self._checked:
            return
        a_path, v_path = self._paths(key)
        try:
            _open_npy(a_path, "audio", mmap=True)
            vis = _open_npy(v_path, "visual", mmap=True)
            chw = tuple(vis.shape[1:])
            if self.visual_shape is None:
                self.visual_shape = chw  # type: ignore[assignment]
            elif chw != self.visual_shape:
                raise DataError(
                    v_path, f"visual feature grid {list(chw)} differs from the other videos' {list(self.visual_shape)}"
                )
        except DataError as e:
            bad[key] = str(e)
            raise
        self._checked.add(key)

    def _answer_index(self, q: AVQAQuestion | AVQAYangQuestion) -> int:
        if self.multiple_choice:
            return q.answer  # type: ignore[return-value]
        assert self.answer_vocab is not None
        if self.unseen_answers == "wrong" and q.answer not in self.answer_vocab:
            return -1
        try:
            return self.answer_vocab.index(q.answer)  # type: ignore[arg-type]
        except DataError:
            raise DataError(
                q.source,
                f"question {q.question_id}: answer {q.answer!r} never occurs in the training answers "
                f"(answer vocabulary of {len(self.answer_vocab)})",
            ) from None

    # -- items ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.questions)

    def _features(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key in self._cache:
            return self._cache[key]
        a_path, v_path = self._paths(key)
        audio = _open_npy(a_path, "audio", mmap=True)
        visual = _open_npy(v_path, "visual", mmap=True)
        # Fancy indexing copies only the kept segments out of the memory map.
        a = np.ascontiguousarray(audio[segment_indices(audio.shape[0], self.n_segments)], dtype=np.float32)
        v = np.ascontiguousarray(visual[segment_indices(visual.shape[0], self.n_segments)], dtype=np.float32)
        if self.cache:
            self._cache[key] = (a, v)
        return a, v

    def video_features(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(audio [S, A], visual [S, C, H, W]) of one video: its kept segments."""
        return self._features(key)

    def __getitem__(self, i: int) -> dict[str, Any]:
        q = self.questions[i]
        key = self._feature_key(q)
        audio, visual = self._features(key)
        item: dict[str, Any] = {
            "audio": torch.from_numpy(audio.copy() if self.cache else audio),
            "visual": torch.from_numpy(visual.copy() if self.cache else visual),
            "question": torch.tensor(self.question_vocab.encode(q.words, self.max_question_len), dtype=torch.long),
            "answer": torch.tensor(self._answer_index(q), dtype=torch.long),
            "type_key": q.type_key,
            "video_id": key,
            "question_id": q.question_id,
        }
        if isinstance(q, AVQAYangQuestion):
            item["sources"] = torch.zeros(22)
            item["choices"] = torch.tensor(
                [self.question_vocab.encode(w, self.max_question_len) for w in q.choice_words], dtype=torch.long
            )
        else:
            item["sources"] = torch.tensor(sources_multi_hot(self._sources.get(q.video_id, ())))
        return item


class _PlannedBatches(Dataset):
    """Item ``j`` is ``make(*plans[j])``: a whole batch built in a DataLoader worker."""

    def __init__(self, make: Any, plans: Sequence[tuple[Any, ...]]):
        self.make, self.plans = make, plans

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, j: int) -> Any:
        return self.make(*self.plans[j])


def _as_is(batch: Any) -> Any:
    return batch


def planned_batches(make: Any, plans: Sequence[tuple[Any, ...]], *, num_workers: int = 0,
                    pin_memory: bool = False) -> Any:
    """``make(*plan)`` for each plan, in order: in ``num_workers`` DataLoader workers (each builds whole
    batches: reads the mmap'd features, collates), or in this process with 0. A batch depends only on
    its plan (indices and seeds), so any worker count gives the same batches."""
    if num_workers <= 0 or len(plans) < 2:
        for p in plans:
            yield make(*p)
        return
    from mmcore.data.loading import loader_generator

    loader = torch.utils.data.DataLoader(_PlannedBatches(make, plans), batch_size=None, shuffle=False,
                                         num_workers=min(num_workers, len(plans)), collate_fn=_as_is,
                                         pin_memory=pin_memory, generator=loader_generator())
    yield from loader
