"""Music-AVQA vs AVQA-Yang: the format is decided from every entry, and a file mixing both is an error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mmcore.avqa.annotations import load_avqa_annotations
from mmcore.avqa.avqa_yang import load_avqa_yang
from mmcore.avqa.format import detect_format, entry_format
from mmcore.avqa.music_avqa import load_music_avqa
from mmcore.errors import DataError

REAL = Path(os.environ["MM_MUSIC_AVQA_DIR"])  # set by tests/conftest.py
needs_real = pytest.mark.skipif(not (REAL / "avqa-test.json").is_file(), reason="real Music-AVQA files not present")

YANG = {"id": 183, "video_name": "-HG3Omg_89c_000030", "video_id": 341, "question_text": "What happened in the video?",
        "multi_choice": ["motorboat", "Yacht consignment", "Sailboat set sail", "Consignment car"], "answer": 1,
        "question_relation": "View", "question_type": "Happening"}  # fmt: skip
MUSIC = {"video_id": "00000093", "question_id": 12, "type": '["Audio", "Counting"]',
         "question_content": "How many musical instruments were heard throughout the video?", "templ_values": "[]",
         "question_deleted": 0, "anser": "one"}  # fmt: skip


@pytest.fixture(scope="module")
def real_test() -> list:
    if not (REAL / "avqa-test.json").is_file():
        pytest.skip("real Music-AVQA files not present")
    return json.loads((REAL / "avqa-test.json").read_text())


def _write(tmp_path: Path, entries, name="mixed.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(entries))
    return p


def test_entry_format():
    assert entry_format(MUSIC) == "music-avqa" and entry_format(YANG) == "avqa-yang"
    assert entry_format({"video_id": "1"}) is None and entry_format([1]) is None
    assert entry_format(MUSIC | {"multi_choice": []}) == "both"
    assert detect_format([], "x.json") is None and detect_format([{"video_id": 1}, MUSIC], "x.json") == "music-avqa"


@needs_real
def test_real_files_are_music_avqa_in_every_entry(real_test):
    assert detect_format(real_test, REAL / "avqa-test.json") == "music-avqa"
    fmt, qs = load_avqa_annotations(REAL / "avqa-val.json")
    assert fmt == "music-avqa" and len(qs) == 4568
    # the wrong loader on a real file: one clear error, not 9129 skipped entries
    with pytest.raises(DataError, match=r"avqa-test\.json: is a Music-AVQA file \(entry 0 .*not an AVQA-Yang file"):
        load_avqa_yang(REAL / "avqa-test.json", skip_bad=True)


def test_a_file_mixing_both_names_the_file_and_the_offending_entry(tmp_path, real_test):
    # the real test file with one AVQA-Yang entry slipped in far from the start: the first entry
    # alone would have called it Music-AVQA
    entries = list(real_test)
    entries.insert(5000, YANG)
    p = _write(tmp_path, entries)
    for load in (load_music_avqa, load_avqa_yang, lambda f, **kw: load_avqa_annotations(f, **kw)[1]):
        for skip_bad in (False, True):  # skip_bad must not silently drop the other format's entries
            with pytest.raises(DataError, match=r"mixed\.json: mixes Music-AVQA and AVQA-Yang entries: entry 5000 is "
                                                rf"an AVQA-Yang entry \(1 such\) while {len(real_test)} entries"):
                load(p, skip_bad=skip_bad)
    with pytest.raises(DataError, match=r"mixed\.json: mixes"):
        load_avqa_annotations(p, format="music-avqa")


def test_offending_entry_is_the_first_of_the_rarer_format(tmp_path):
    p = _write(tmp_path, [YANG, MUSIC, MUSIC, dict(MUSIC, question_id=13)])
    with pytest.raises(DataError, match=r"entry 0 is an AVQA-Yang entry \(1 such\) while 3 entries, from entry 1 on"):
        load_avqa_annotations(p)
    p = _write(tmp_path, [MUSIC, YANG, dict(YANG, id=2), {"video_id": "x"}])
    with pytest.raises(DataError, match=r"entry 0 is a Music-AVQA entry \(1 such\) while 2 entries, from entry 1 on"):
        load_avqa_annotations(p)
    p = _write(tmp_path, [MUSIC, MUSIC | {"question_text": "Where?"}], "both.json")
    with pytest.raises(DataError, match=r"both\.json: entry 1 mixes the two annotation formats.*'question_text'"):
        load_music_avqa(p, skip_bad=True)


def test_format_decided_or_insisted_on(tmp_path):
    yang = _write(tmp_path, [YANG, dict(YANG, id=184)], "yang.json")
    fmt, qs = load_avqa_annotations(yang)
    assert fmt == "avqa-yang" and len(qs) == 2
    assert load_avqa_annotations(yang, format="avqa-yang")[1][1].question_id == 184
    with pytest.raises(DataError, match=r"yang\.json: is an AVQA-Yang file \(entry 0 .*not a Music-AVQA file"):
        load_avqa_annotations(yang, format="music-avqa")
    with pytest.raises(DataError, match="unknown annotation format 'yang'"):
        load_avqa_annotations(yang, format="yang")
    # nothing recognisable: Music-AVQA's own per-entry errors
    junk = _write(tmp_path, [{"video_id": "1"}], "junk.json")
    with pytest.raises(DataError, match=r"junk\.json: entry 0: missing key"):
        load_avqa_annotations(junk)
    assert load_avqa_annotations(junk, skip_bad=True)[1].skipped == 1


def toy_loader(path, skip_bad=False):  # the toy format's loader: one question per entry's "q"
    import json

    return [e["q"] for e in json.loads(path.read_text())]


def test_a_registered_format_is_detected_loaded_and_named_in_errors(tmp_path):
    from mmcore.avqa.format import (
        AnnotationFormat,
        annotation_formats,
        register_annotation_format,
        unregister_annotation_format,
    )

    register_annotation_format(AnnotationFormat("toy", "Toy-QA", "a", frozenset({"toy_q"}),
                                                f"{__name__}:toy_loader"))
    try:
        assert annotation_formats()[-1] == "toy"
        p = _write(tmp_path, [{"toy_q": 1, "q": "why?"}, {"toy_q": 2, "q": "how?"}], "toy.json")
        assert load_avqa_annotations(p) == ("toy", ["why?", "how?"])
        mixed = _write(tmp_path, [{"toy_q": 1, "q": "why?"}, MUSIC, MUSIC], "mixed.json")
        with pytest.raises(DataError, match=r"mixes Music-AVQA and Toy-QA entries: entry 0 is a Toy-QA entry"):
            load_avqa_annotations(mixed)
    finally:
        unregister_annotation_format("toy")
    assert "toy" not in annotation_formats()
