"""Music-AVQA annotations: loading the real val/test files, template filling, vocabularies, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmcore.avqa.music_avqa import (
    INSTRUMENTS,
    QUESTION_TYPES,
    REPORT_KEYS,
    TYPE_KEY,
    AVQAQuestion,
    Vocab,
    build_answer_vocab,
    build_question_vocab,
    fill_template,
    load_music_avqa,
    sources_multi_hot,
    stats,
    video_sources,
)
from mmcore.errors import DataError

REAL = Path(os.environ["MM_MUSIC_AVQA_DIR"])  # set by tests/conftest.py
VAL, TEST = REAL / "avqa-val.json", REAL / "avqa-test.json"
needs_real = pytest.mark.skipif(not VAL.is_file() or not TEST.is_file(), reason="real Music-AVQA files not present")


def _entry(**kw) -> dict:
    e = {
        "video_id": "00000001",
        "question_id": 7,
        "type": json.dumps(["Audio-Visual", "Comparative"]),
        "question_content": "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
        "templ_values": json.dumps(["violin", "left", "cello", "right"]),
        "question_deleted": 0,
        "anser": "yes",
    }
    e.update(kw)
    return e


def _write(tmp_path: Path, entries, name="ann.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(entries))
    return p


@pytest.fixture(scope="module")
def real_val():
    return load_music_avqa(VAL)


@pytest.fixture(scope="module")
def real_test():
    return load_music_avqa(TEST)


def test_constants_match_the_doc():
    assert len(INSTRUMENTS) == 22 and INSTRUMENTS[0] == "accordion" and INSTRUMENTS[-1] == "xylophone"
    assert list(INSTRUMENTS) == sorted(INSTRUMENTS)  # the doc lists them alphabetically
    assert len(QUESTION_TYPES) == 9 and set(QUESTION_TYPES) == set(TYPE_KEY)
    assert TYPE_KEY[("Audio", "Counting")] == "A-Count" and TYPE_KEY[("Audio-Visual", "Temporal")] == "AV-Temp"
    assert [k for k in REPORT_KEYS if k in TYPE_KEY.values()] == [TYPE_KEY[t] for t in QUESTION_TYPES]


@needs_real
def test_real_files_reproduce_every_documented_count(real_val, real_test):
    sv, st_ = stats(real_val), stats(real_test)
    assert (sv["questions"], sv["videos"], sv["answers"]) == (4568, 3815, 41)
    assert (st_["questions"], st_["videos"], st_["answers"]) == (9129, 6399, 41)
    assert st_["per_type"] == {
        "Audio/Counting": 1017, "Audio/Comparative": 594, "Visual/Counting": 1197, "Visual/Location": 1225,
        "Audio-Visual/Existential": 988, "Audio-Visual/Counting": 1265, "Audio-Visual/Location": 920,
        "Audio-Visual/Comparative": 1101, "Audio-Visual/Temporal": 822,
    }  # fmt: skip
    assert st_["per_type_key"]["A-Count"] == 1017 and st_["per_type_key"]["AV-Temp"] == 822
    assert sum(sv["per_type"].values()) == 4568
    assert real_val.skipped == 0 and real_test.skipped == 0
    # The doc lists 41 answers by name (the training file adds one more, unnamed): exactly those appear.
    documented = set(INSTRUMENTS) | {"yes", "no", "zero", "one", "two", "three", "four", "five", "six", "seven",
                                     "eight", "nine", "more than ten", "left", "middle", "right", "indoor",
                                     "outdoor", "simultaneously"}  # fmt: skip
    answers = {q.answer for q in real_val} | {q.answer for q in real_test}
    assert len(documented) == 41 and answers == documented


@needs_real
def test_real_templates_are_filled_by_the_documented_rule(real_test):
    raw = json.loads(TEST.read_text())
    by_id = {q.question_id: q for q in real_test}
    for e in raw[:500]:
        q = by_id[e["question_id"]]
        # The rule, spelled out independently: split, drop the last char of the last word, fill slots.
        words = e["question_content"].rstrip().split(" ")
        words[-1] = words[-1][:-1]
        values = iter(json.loads(e["templ_values"]))
        assert q.words == [next(values) if "<" in w else w for w in words]
    q = next(q for q in real_test if q.template == "Is the <Object> on the <LR> louder than the <Object> on the <LR>?")
    assert q.words[2] in INSTRUMENTS and q.words[5] in ("left", "middle", "right") and q.text.endswith("?")
    # The full-width question mark and the trailing-space templates are handled too.
    fw = next(q for q in real_test if q.template.endswith("？"))
    assert fw.words[-1] == "video" and "<" not in " ".join(fw.words)
    assert max(len(q.words) for q in real_test) <= 14


def test_fill_template_examples_and_errors():
    assert fill_template("Is the <Object> louder than the <Object>?", ["guzheng", "piano"]) == [
        "Is", "the", "guzheng", "louder", "than", "the", "piano"]  # fmt: skip
    assert fill_template("Which instrument makes sounds <BA> the <Object>?", ["before", "violin"])[-1] == "violin"
    assert fill_template("Are there <Object> and <Object> sound? ", ["a", "b"]) == ["Are", "there", "a", "and", "b", "sound"]
    with pytest.raises(DataError, match="2 slot"):
        fill_template("Is the <Object> louder than the <Object>?", ["piano"])
    with pytest.raises(DataError, match="0 slot"):
        fill_template("Is there a voiceover?", ["piano"])


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_slot = st.sampled_from(["<Object>", "<LR>", "<LL>", "<TH>", "<FL>", "<BA>", "<LRer>"])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.one_of(_word, _slot), min_size=1, max_size=14), data=st.data())
def test_fill_template_property(parts, data):
    template = " ".join(parts) + "?"
    n_slots = sum("<" in p for p in parts)
    values = data.draw(st.lists(_word, min_size=n_slots, max_size=n_slots))
    out = fill_template(template, values)
    assert len(out) == len(parts)
    assert [w for w, p in zip(out, parts, strict=True) if "<" in p] == values  # slots in order
    assert [w for w, p in zip(out, parts, strict=True) if "<" not in p] == [p for p in parts if "<" not in p]
    assert not out[-1].endswith("?")  # the final "?" is dropped
    with pytest.raises(DataError):
        fill_template(template, [*values, "extra"])


def test_load_validates_and_reports_the_file(tmp_path):
    ok = _write(tmp_path, [_entry(), _entry(question_id=8, question_deleted=1)])
    qs = load_music_avqa(ok)
    assert len(qs) == 1 and qs[0].qtype == ("Audio-Visual", "Comparative") and qs[0].type_key == "AV-Comp"
    assert qs[0].words[2:4] == ["violin", "on"] and qs[0].source == str(ok)

    bad_json = tmp_path / "broken.json"
    bad_json.write_text('[{"video_id": "1",')
    with pytest.raises(DataError, match=r"broken\.json.*malformed JSON"):
        load_music_avqa(bad_json)

    renamed = {k if k != "anser" else "answer": v for k, v in _entry().items()}
    with pytest.raises(DataError, match=r"wrongkey\.json: entry 0: missing key.*'anser'.*spells it"):
        load_music_avqa(_write(tmp_path, [renamed], "wrongkey.json"))
    with pytest.raises(DataError, match=r"badtype\.json: entry 0: type .* is not one of the 9"):
        load_music_avqa(_write(tmp_path, [_entry(type='["Audio", "Guessing"]')], "badtype.json"))
    with pytest.raises(DataError, match="type is not valid JSON"):
        load_music_avqa(_write(tmp_path, [_entry(type="Audio, Counting")], "t.json"))
    with pytest.raises(DataError, match="4 slot.*3 value"):
        load_music_avqa(_write(tmp_path, [_entry(templ_values='["a", "left", "b"]')], "v.json"))
    with pytest.raises(DataError, match="expected a JSON list"):
        load_music_avqa(_write(tmp_path, {"questions": []}, "obj.json"))
    with pytest.raises(DataError, match="file not found"):
        load_music_avqa(tmp_path / "missing.json")


def test_skip_bad_skips_and_counts(tmp_path):
    entries = [
        _entry(question_id=1),
        _entry(question_id=2, type="nonsense"),
        {"video_id": "x"},
        _entry(question_id=4, anser=3),
        _entry(question_id=5, video_id="00000002"),
    ]
    p = _write(tmp_path, entries)
    with pytest.raises(DataError, match="entry 1"):
        load_music_avqa(p)
    qs = load_music_avqa(p, skip_bad=True)
    assert [q.question_id for q in qs] == [1, 5]
    assert qs.skipped == 3 and [s.split(":")[0] for s in qs.problems] == ["entry 1", "entry 2", "entry 3"]


@needs_real
def test_vocabularies_build_save_and_load(tmp_path, real_val, real_test):
    qv, av = build_question_vocab(real_val), build_answer_vocab(real_val)
    assert qv.tokens[:2] == ["<pad>", "<unk>"] and qv.pad_index == 0
    assert 80 < len(qv) < 120  # the paper's training vocabulary has 93 entries incl. <pad>
    assert len(av) == 41 and av.pad_index is None and av.unk_index is None
    q = real_val[0]
    ids = qv.encode(q.words, max_len=14)
    assert len(ids) == 14 and ids[len(q.words):] == [0] * (14 - len(q.words))
    assert [qv.tokens[i] for i in ids[: len(q.words)]] == q.words
    assert qv.encode(["Is", "zzzunseen"], max_len=3) == [qv.index("Is"), 1, 0]
    assert len(qv.encode(["Is"] * 20, max_len=14)) == 14
    qv.save(tmp_path / "qv.json")
    av.save(tmp_path / "av.json")
    assert Vocab.load(tmp_path / "qv.json") == qv and Vocab.load(tmp_path / "av.json") == av
    with pytest.raises(DataError, match="'banana' is not in the answer vocabulary"):
        av.index("banana")
    with pytest.raises(DataError, match="no <pad>"):
        av.encode(["yes"])
    (tmp_path / "bad.json").write_text('["a", "b"]')
    with pytest.raises(DataError, match=r"bad\.json.*vocabulary object"):
        Vocab.load(tmp_path / "bad.json")
    # Building from a split that lacks an answer: the other split's questions hit it.
    only_yes = build_answer_vocab([q for q in real_val if q.answer in ("yes", "no")])
    assert len(only_yes) == 2
    with pytest.raises(DataError, match="'one'"):
        [only_yes.index(q.answer) for q in real_test]


def _q(vid, template, values, answer, qid=0):
    return AVQAQuestion(qid, vid, ("Audio", "Counting"), template, values, fill_template(template, values), answer)


def test_video_sources_rule():
    qs = [
        _q("a", "Is the <Object> louder than the <Object>?", ["violin", "cello"], "no"),
        _q("a", "What is the <TH> instrument that comes in?", ["first"], "piano"),
        _q("a", "Is there a <Object> sound?", ["tuba"], "no"),  # tuba may be absent: not counted
        _q("b", "How many <Object> are in the entire video?", ["flute"], "zero"),
        _q("b", "How many <Object> are in the entire video?", ["erhu"], "two"),
        _q("c", "Is there a voiceover?", [], "yes"),
    ]
    src = video_sources(qs)
    assert src == {"a": ["cello", "piano", "violin"], "b": ["erhu"], "c": []}
    hot = sources_multi_hot(src["a"])
    assert len(hot) == 22 and sum(hot) == 3 and hot[INSTRUMENTS.index("cello")] == 1.0


@needs_real
def test_video_sources_on_real_files(real_test):
    src = video_sources(real_test)
    assert len(src) == 6399
    assert all(set(v) <= set(INSTRUMENTS) for v in src.values())
    assert sum(bool(v) for v in src.values()) > 0.5 * len(src)
