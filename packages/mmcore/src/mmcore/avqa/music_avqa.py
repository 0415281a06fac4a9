"""Music-AVQA annotations (the corrected "json_update" release of Li et al., CVPR 2022).

Each annotation file is a JSON list of objects with the keys ``video_id``, ``question_id``,
``type`` (a JSON-encoded 2-list such as ``"[\\"Audio\\", \\"Counting\\"]"``), ``question_content``
(a template such as ``"Is the <Object> louder than the <Object>?"``), ``templ_values`` (a
JSON-encoded list of slot values), ``question_deleted`` and ``anser`` (sic: the release misspells
"answer"). This module loads and validates them, fills the templates exactly as the public
loaders do, builds question/answer vocabularies and derives per-video source (instrument) labels.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.avqa.format import QuestionList, read_question_list
from mmcore.errors import DataError
from mmcore.io import atomic_write_text, read_json

#: The 22 Music-AVQA instruments; the index is the SaSR-Net source-token id.
INSTRUMENTS: tuple[str, ...] = (
    "accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet",
    "congas", "drum", "electric_bass", "erhu", "flute", "guzheng", "piano", "pipa",
    "saxophone", "suona", "trumpet", "tuba", "ukulele", "violin", "xylophone",
)  # fmt: skip

#: The 9 (modality, type) question types, in the order the per-type accuracies are reported.
QUESTION_TYPES: tuple[tuple[str, str], ...] = (
    ("Audio", "Counting"),
    ("Audio", "Comparative"),
    ("Visual", "Counting"),
    ("Visual", "Location"),
    ("Audio-Visual", "Existential"),
    ("Audio-Visual", "Counting"),
    ("Audio-Visual", "Location"),
    ("Audio-Visual", "Comparative"),
    ("Audio-Visual", "Temporal"),
)

#: Short report key of each question type (the column names of the paper's table).
TYPE_KEY: dict[tuple[str, str], str] = {
    ("Audio", "Counting"): "A-Count",
    ("Audio", "Comparative"): "A-Comp",
    ("Visual", "Counting"): "V-Count",
    ("Visual", "Location"): "V-Loc",
    ("Audio-Visual", "Existential"): "AV-Ext",
    ("Audio-Visual", "Counting"): "AV-Count",
    ("Audio-Visual", "Location"): "AV-Loc",
    ("Audio-Visual", "Comparative"): "AV-Comp",
    ("Audio-Visual", "Temporal"): "AV-Temp",
}

#: Average groups: report key -> the type keys it averages over.
AVG_GROUPS: dict[str, tuple[str, ...]] = {
    "A-Avg": ("A-Count", "A-Comp"),
    "V-Avg": ("V-Count", "V-Loc"),
    "AV-Avg": ("AV-Ext", "AV-Count", "AV-Loc", "AV-Comp", "AV-Temp"),
}

#: Every metric key in report order (per type, group averages, overall).
REPORT_KEYS: tuple[str, ...] = (
    "A-Count", "A-Comp", "A-Avg", "V-Count", "V-Loc", "V-Avg",
    "AV-Ext", "AV-Count", "AV-Loc", "AV-Comp", "AV-Temp", "AV-Avg", "overall",
)  # fmt: skip

#: Keys every annotation object must have ("anser" is the release's own spelling).
REQUIRED_KEYS: tuple[str, ...] = (
    "video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser",
)  # fmt: skip

PAD = "<pad>"
UNK = "<unk>"

#: Templates whose "no"/"zero" answer may mean the named instrument is absent from the video.
_ABSENCE_TEMPLATES = frozenset(
    {
        "Is there a <Object> sound?",
        "Are there <Object> and <Object> sound? ",
        "Is there a <Object> in the entire video?",
        "Are there <Object> and <Object> instruments in the video?",
        "How many <Object> are in the entire video?",
    }
)
_NEGATIVE_ANSWERS = frozenset({"no", "zero"})


@dataclass
class AVQAQuestion:
    """One Music-AVQA question with its template filled into ``words``."""

    question_id: int
    video_id: str
    qtype: tuple[str, str]
    template: str
    templ_values: list[str]
    words: list[str]
    answer: str
    source: str | None = None  # annotation file it came from, for error messages

    @property
    def type_key(self) -> str:
        return TYPE_KEY[self.qtype]

    @property
    def text(self) -> str:
        return " ".join(self.words) + "?"


def fill_template(template: str, values: Sequence[str]) -> list[str]:
    """Fill a question template the way every public Music-AVQA loader does.

    Split on single spaces (after stripping trailing whitespace), drop the final question mark
    (ASCII or full-width) from the last word, then replace each word containing ``<`` with the
    next value, in order. Raises :class:`DataError` if the number of slots and values differ.
    """
    words = template.rstrip().split(" ")
    if words and words[-1][-1:] in ("?", "？"):
        words[-1] = words[-1][:-1]
    slots = [i for i, w in enumerate(words) if "<" in w]
    if len(slots) != len(values):
        raise DataError(
            None, f"template {template!r} has {len(slots)} slot(s) but {len(values)} value(s) {list(values)!r}"
        )
    for i, v in zip(slots, values, strict=True):
        words[i] = str(v)
    return words


def _decode_json_field(raw: Any, what: str) -> Any:
    if not isinstance(raw, str):
        raise ValueError(f"{what} must be a JSON-encoded string, got {type(raw).__name__}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"{what} is not valid JSON: {raw!r}") from None


def _parse_entry(entry: Any, source: str) -> AVQAQuestion | None:
    """One annotation object → question (None if marked deleted); ValueError describes a problem."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        hint = ' (the release spells it "anser")' if "anser" in missing and "answer" in entry else ""
        raise ValueError(f"missing key(s) {missing}{hint}; has {sorted(entry)}")
    if entry["question_deleted"] not in (0, 1, False, True):
        raise ValueError(f"question_deleted must be 0 or 1, got {entry['question_deleted']!r}")
    if entry["question_deleted"]:
        return None
    qid = entry["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, int):
        raise ValueError(f"question_id must be an integer, got {qid!r}")
    vid = entry["video_id"]
    if not isinstance(vid, str) or not vid:
        raise ValueError(f"video_id must be a non-empty string, got {vid!r}")
    qtype = _decode_json_field(entry["type"], "type")
    if not (isinstance(qtype, list) and len(qtype) == 2 and tuple(qtype) in TYPE_KEY):
        raise ValueError(f"type {entry['type']!r} is not one of the 9 question types {list(TYPE_KEY)}")
    values = _decode_json_field(entry["templ_values"], "templ_values")
    if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        raise ValueError(f"templ_values must encode a list of strings, got {entry['templ_values']!r}")
    template = entry["question_content"]
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"question_content must be a non-empty string, got {template!r}")
    answer = entry["anser"]
    if not isinstance(answer, str) or not answer:
        raise ValueError(f"anser must be a non-empty string, got {answer!r}")
    try:
        words = fill_template(template, values)
    except DataError as e:
        raise ValueError(e.problem) from None
    return AVQAQuestion(qid, vid, (qtype[0], qtype[1]), template, values, words, answer, source)


def load_music_avqa(path: str | Path, *, skip_bad: bool = False) -> QuestionList:
    """Load and validate a Music-AVQA annotation file.

    Deleted questions (``question_deleted`` = 1) are dropped. A malformed entry raises
    :class:`DataError` naming the file, the entry index and the problem; with ``skip_bad`` it is
    skipped instead and counted in the result's ``skipped`` (reasons in ``problems``). A file whose
    entries are AVQA-Yang's, all or some, is a :class:`DataError` whatever ``skip_bad``.
    """
    return read_question_list(
        path, lambda entry, _i: _parse_entry(entry, str(path)), skip_bad=skip_bad, fmt="music-avqa"
    )


class Vocab:
    """Token ↔ index map. Question vocabularies start with ``<pad>`` = 0 and ``<unk>`` = 1;
    answer vocabularies have neither (an unknown answer is an error, not a class)."""

    def __init__(self, tokens: Sequence[str], *, kind: str = "question", source: str | None = None):
        self.tokens: list[str] = list(tokens)
        self.kind = kind
        self.source = source  # where it was loaded from / built from, for error messages
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            dup = [t for t, c in Counter(self.tokens).items() if c > 1]
            raise DataError(source, f"{kind} vocabulary has duplicate tokens {dup}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, tok: object) -> bool:
        return tok in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens and self.kind == other.kind

    @property
    def pad_index(self) -> int | None:
        return self._index.get(PAD)

    @property
    def unk_index(self) -> int | None:
        return self._index.get(UNK)

    def index(self, tok: str) -> int:
        """Index of ``tok``; unknown tokens map to ``<unk>`` or raise :class:`DataError` if there is none."""
        i = self._index.get(tok)
        if i is not None:
            return i
        if self.unk_index is not None:
            return self.unk_index
        raise DataError(
            self.source,
            f"{self.kind} {tok!r} is not in the {self.kind} vocabulary built from the training split "
            f"({len(self)} entries)",
        )

    def encode(self, words: Sequence[str], max_len: int = 14) -> list[int]:
        """Indices of ``words``, truncated to / right-padded with ``<pad>`` up to ``max_len``."""
        if self.pad_index is None:
            raise DataError(self.source, f"the {self.kind} vocabulary has no {PAD} token to pad with")
        ids = [self.index(w) for w in words[:max_len]]
        return ids + [self.pad_index] * (max_len - len(ids))

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps({"kind": self.kind, "tokens": self.tokens}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = read_json(path)
        if not (isinstance(data, dict) and isinstance(data.get("tokens"), list) and isinstance(data.get("kind"), str)):
            raise DataError(path, 'expected a vocabulary object {"kind": str, "tokens": [str, ...]}')
        if not all(isinstance(t, str) for t in data["tokens"]):
            raise DataError(path, "vocabulary tokens must all be strings")
        return cls(data["tokens"], kind=data["kind"], source=str(path))


def build_question_vocab(questions: Iterable[AVQAQuestion]) -> Vocab:
    """Question-word vocabulary from the TRAINING questions: ``<pad>``, ``<unk>``, then words sorted."""
    words = sorted({w for q in questions for w in q.words})
    return Vocab([PAD, UNK, *words], kind="question")


def build_answer_vocab(questions: Iterable[AVQAQuestion]) -> Vocab:
    """Answer vocabulary from the TRAINING questions (sorted, no padding, no ``<unk>``)."""
    qs = list(questions)
    source = qs[0].source if qs else None
    return Vocab(sorted({q.answer for q in qs}), kind="answer", source=source)


def video_sources(questions: Iterable[AVQAQuestion]) -> dict[str, list[str]]:
    """Per-video instruments (sorted by source-token index) derived from the questions.

    Rule: an instrument belongs to a video if it is (a) the answer to one of the video's questions,
    or (b) a template value of one of its questions — except when the question tests the
    instrument's existence ("Is there a <Object> sound?", "Are there <Object> and <Object> sound?",
    "Is there a <Object> in the entire video?", "Are there <Object> and <Object> instruments in
    the video?", "How many <Object> are in the entire video?") and the answer is "no" or "zero",
    because then the instrument may be absent. Videos are listed even if no instrument is known.
    """
    known = set(INSTRUMENTS)
    found: dict[str, set[str]] = {}
    for q in questions:
        s = found.setdefault(q.video_id, set())
        if q.answer in known:
            s.add(q.answer)
        if q.template in _ABSENCE_TEMPLATES and q.answer in _NEGATIVE_ANSWERS:
            continue
        s.update(v for v in q.templ_values if v in known)
    order = {name: i for i, name in enumerate(INSTRUMENTS)}
    return {vid: sorted(s, key=order.__getitem__) for vid, s in found.items()}


def sources_multi_hot(instruments: Iterable[str]) -> list[float]:
    """22-d multi-hot vector (source-token order) of the given instrument names."""
    vec = [0.0] * len(INSTRUMENTS)
    order = {name: i for i, name in enumerate(INSTRUMENTS)}
    for name in instruments:
        vec[order[name]] = 1.0
    return vec


def stats(questions: Sequence[AVQAQuestion]) -> dict[str, Any]:
    """Counts of a question set: questions, videos, distinct answers and questions per type.

    ``per_type`` is keyed "Audio/Counting"-style, ``per_type_key`` by the report keys ("A-Count", ...).
    """
    counts = Counter(q.qtype for q in questions)
    return {
        "questions": len(questions),
        "videos": len({q.video_id for q in questions}),
        "answers": len({q.answer for q in questions}),
        "templates": len({q.template for q in questions}),
        "per_type": {f"{m}/{t}": counts.get((m, t), 0) for m, t in QUESTION_TYPES},
        "per_type_key": {TYPE_KEY[qt]: counts.get(qt, 0) for qt in QUESTION_TYPES},
        "answer_counts": dict(Counter(q.answer for q in questions).most_common()),
    }
