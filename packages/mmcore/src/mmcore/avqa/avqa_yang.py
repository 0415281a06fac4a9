"""AVQA-Yang annotations (Yang et al., ACM MM 2022): 4-way multiple-choice audio-visual QA.

Each file is a JSON list of objects with (at least) the keys ``video_name`` (the clip's file stem,
which also names its feature files), ``video_id``, ``question_text``, ``answer`` (index of the
correct choice), ``multi_choice`` (4 strings) and ``question_type`` (Which, Come From, Happening,
Where, Why, Before Next, When, Used For). Extra keys of the release (``id``,
``question_relation``) are kept when present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.avqa.format import QuestionList, read_question_list

REQUIRED_KEYS: tuple[str, ...] = (
    "video_name", "video_id", "question_text", "answer", "multi_choice", "question_type",
)  # fmt: skip
QUESTION_TYPES: tuple[str, ...] = (
    "Which", "Come From", "Happening", "Where", "Why", "Before Next", "When", "Used For",
)  # fmt: skip
N_CHOICES = 4

_WORD = re.compile(r"[\w']+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): the question/choice words fed to the vocabulary."""
    return _WORD.findall(text.lower())


@dataclass
class AVQAYangQuestion:
    """One AVQA-Yang multiple-choice question."""

    question_id: int
    video_name: str
    video_id: str
    question_text: str
    choices: list[str]
    answer: int  # index into ``choices``
    question_type: str
    relation: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> list[str]:
        return tokenize(self.question_text)

    @property
    def choice_words(self) -> list[list[str]]:
        return [tokenize(c) for c in self.choices]

    @property
    def type_key(self) -> str:
        return self.question_type

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer]


def _parse(entry: Any, index: int, source: str) -> AVQAYangQuestion:
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(f"missing key(s) {missing}; has {sorted(entry)}")
    name, vid, text = entry["video_name"], entry["video_id"], entry["question_text"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"video_name must be a non-empty string, got {name!r}")
    if isinstance(vid, bool) or not isinstance(vid, int | str):
        raise ValueError(f"video_id must be a string or integer, got {vid!r}")
    if not isinstance(text, str) or not tokenize(text):
        raise ValueError(f"question_text must be a non-empty string, got {text!r}")
    choices = entry["multi_choice"]
    if not (isinstance(choices, list) and len(choices) == N_CHOICES and all(isinstance(c, str) for c in choices)):
        raise ValueError(f"multi_choice must be a list of {N_CHOICES} strings, got {choices!r}")
    ans = entry["answer"]
    if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans < N_CHOICES:
        raise ValueError(f"answer must be a choice index 0..{N_CHOICES - 1}, got {ans!r}")
    qtype = entry["question_type"]
    if qtype not in QUESTION_TYPES:
        raise ValueError(f"question_type {qtype!r} is not one of {list(QUESTION_TYPES)}")
    qid = entry.get("id", index)
    if isinstance(qid, bool) or not isinstance(qid, int):
        raise ValueError(f"id must be an integer, got {qid!r}")
    extra = {k: v for k, v in entry.items() if k not in REQUIRED_KEYS and k not in ("id", "question_relation")}
    return AVQAYangQuestion(
        qid, name, str(vid), text, list(choices), ans, qtype, entry.get("question_relation"), source, extra
    )


def load_avqa_yang(path: str | Path, *, skip_bad: bool = False) -> QuestionList:
    """Load and validate an AVQA-Yang annotation file.

    A malformed entry raises :class:`DataError` naming the file, entry and problem; with
    ``skip_bad`` it is skipped and counted in the result's ``skipped`` (reasons in ``problems``).
    A file whose entries are Music-AVQA's, all or some, is a :class:`DataError` whatever ``skip_bad``.
    """
    return read_question_list(path, lambda entry, i: _parse(entry, i, str(path)), skip_bad=skip_bad, fmt="avqa-yang")


def stats(questions: list[AVQAYangQuestion]) -> dict[str, Any]:
    """Counts of an AVQA-Yang question set: questions, videos, questions per type."""
    from collections import Counter

    counts = Counter(q.question_type for q in questions)
    return {
        "questions": len(questions),
        "videos": len({q.video_name for q in questions}),
        "per_type": {t: counts.get(t, 0) for t in QUESTION_TYPES},
    }
