"""AVQA-Yang annotations: keys, validation, skip-bad counting."""

from __future__ import annotations

import json

import pytest
from mmcore.avqa.avqa_yang import QUESTION_TYPES, load_avqa_yang, stats, tokenize
from mmcore.errors import DataError


def _entry(**kw) -> dict:
    e = {
        "id": 183,
        "video_name": "-HG3Omg_89c_000030",
        "video_id": 341,
        "question_text": "What happened in the video?",
        "multi_choice": ["motorboat", "Yacht consignment", "Sailboat set sail", "Consignment car"],
        "answer": 1,
        "question_relation": "View",
        "question_type": "Happening",
    }
    e.update(kw)
    return e


def test_load_valid_file(tmp_path):
    p = tmp_path / "train_qa.json"
    p.write_text(json.dumps([_entry(), _entry(id=184, video_id="0342", question_type="Come From")]))
    qs = load_avqa_yang(p)
    assert len(qs) == 2 and qs.skipped == 0
    q = qs[0]
    assert (q.question_id, q.video_name, q.video_id, q.answer, q.answer_text) == (
        183, "-HG3Omg_89c_000030", "341", 1, "Yacht consignment")  # fmt: skip
    assert q.words == ["what", "happened", "in", "the", "video"] and q.relation == "View"
    assert q.choice_words[2] == ["sailboat", "set", "sail"] and q.type_key == "Happening"
    s = stats(qs)
    assert s["questions"] == 2 and s["videos"] == 1 and s["per_type"]["Come From"] == 1
    assert set(s["per_type"]) == set(QUESTION_TYPES) and len(QUESTION_TYPES) == 8
    assert tokenize("Where's the dog, now?") == ["where's", "the", "dog", "now"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": 4}, "answer must be a choice index"),
        ({"answer": "1"}, "answer must be a choice index"),
        ({"multi_choice": ["a", "b", "c"]}, "multi_choice must be a list of 4"),
        ({"question_type": "How"}, "question_type 'How' is not one of"),
        ({"video_name": ""}, "video_name must be"),
        ({"question_text": "?"}, "question_text must be"),
    ],
)
def test_bad_entries_name_the_file_and_problem(tmp_path, change, message):
    p = tmp_path / "bad_qa.json"
    p.write_text(json.dumps([_entry(), _entry(**change)]))
    with pytest.raises(DataError, match=rf"bad_qa\.json: entry 1: {message}"):
        load_avqa_yang(p)
    qs = load_avqa_yang(p, skip_bad=True)
    assert len(qs) == 1 and qs.skipped == 1 and qs.problems[0].startswith("entry 1")


def test_wrong_key_and_malformed_json(tmp_path):
    e = _entry()
    e["question"] = e.pop("question_text")
    p = tmp_path / "k.json"
    p.write_text(json.dumps([e]))
    with pytest.raises(DataError, match=r"k\.json: entry 0: missing key\(s\) \['question_text'\]"):
        load_avqa_yang(p)
    p.write_text("[{]")
    with pytest.raises(DataError, match="malformed JSON"):
        load_avqa_yang(p)
