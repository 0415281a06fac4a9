"""`mm avqa stats` and `mm avqa synth` (registered on a bare Typer app, so other command modules don't matter)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from mm_cli import avqa_data_cmds
from typer.testing import CliRunner

REAL = Path(os.environ["MM_MUSIC_AVQA_DIR"])  # set by tests/conftest.py
needs_real = pytest.mark.skipif(not (REAL / "avqa-test.json").is_file(), reason="real Music-AVQA files not present")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    avqa_data_cmds.register(a)
    return a


def _run(app, args):
    return CliRunner().invoke(app, args)


@needs_real
def test_stats_json_reproduces_the_documented_counts(app):
    res = _run(app, ["stats", str(REAL / "avqa-test.json"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert (s["questions"], s["videos"], s["answers"]) == (9129, 6399, 41)
    assert s["per_type"] == {
        "Audio/Counting": 1017, "Audio/Comparative": 594, "Visual/Counting": 1197, "Visual/Location": 1225,
        "Audio-Visual/Existential": 988, "Audio-Visual/Counting": 1265, "Audio-Visual/Location": 920,
        "Audio-Visual/Comparative": 1101, "Audio-Visual/Temporal": 822,
    }  # fmt: skip
    assert s["per_type_key"]["V-Loc"] == 1225 and s["skipped"] == 0
    res = _run(app, ["stats", str(REAL / "avqa-val.json"), "--json"])
    s = json.loads(res.output)
    assert (s["questions"], s["videos"], s["answers"]) == (4568, 3815, 41)


@needs_real
def test_stats_table(app):
    res = _run(app, ["stats", str(REAL / "avqa-val.json")])
    assert res.exit_code == 0, res.output
    assert "4568" in res.output and "3815" in res.output and "AV-Temp" in res.output


def test_bad_input_is_one_line_exit_2(app, tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("[{")
    res = _run(app, ["stats", str(p)])
    assert res.exit_code == 2 and "broken.json" in res.output and "malformed JSON" in res.output
    assert "Traceback" not in res.output
    entry = {"video_id": "1", "question_id": 1, "type": '["Audio", "Counting"]', "question_content": "Is there a voiceover?",
             "templ_values": "[]", "question_deleted": 0, "answer": "yes"}  # fmt: skip
    p.write_text(json.dumps([entry]))
    res = _run(app, ["stats", str(p)])
    assert res.exit_code == 2 and "anser" in res.output
    good = dict(entry, anser="yes")
    del good["answer"]
    p.write_text(json.dumps([good, entry]))
    res = _run(app, ["stats", str(p), "--json", "--skip-bad"])
    assert res.exit_code == 0 and json.loads(res.output)["skipped"] == 1
    res = _run(app, ["stats", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_stats_avqa_yang(app, tmp_path):
    e = {"id": 1, "video_name": "a", "video_id": 1, "question_text": "Where is it?", "answer": 0,
         "multi_choice": ["a", "b", "c", "d"], "question_type": "Where"}  # fmt: skip
    p = tmp_path / "yang.json"
    p.write_text(json.dumps([e, dict(e, id=2, question_type="Why")]))
    res = _run(app, ["stats", str(p), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["format"] == "avqa-yang" and s["questions"] == 2 and s["per_type"]["Why"] == 1


def test_stats_format_option_and_mixed_files(app, tmp_path):
    yang = {"id": 1, "video_name": "a", "video_id": 1, "question_text": "Where is it?", "answer": 0,
            "multi_choice": ["a", "b", "c", "d"], "question_type": "Where"}  # fmt: skip
    music = {"video_id": "1", "question_id": 1, "type": '["Audio", "Counting"]', "question_content": "Is there a voiceover?",
             "templ_values": "[]", "question_deleted": 0, "anser": "yes"}  # fmt: skip
    p = tmp_path / "m.json"
    p.write_text(json.dumps([music, dict(music, question_id=2)]))
    res = _run(app, ["stats", str(p), "--json", "--format", "music-avqa"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["format"] == "music-avqa" and json.loads(res.output)["questions"] == 2
    res = _run(app, ["stats", str(p), "--format", "avqa-yang", "--skip-bad"])
    assert res.exit_code == 2 and "m.json: is a Music-AVQA file" in res.output and "Traceback" not in res.output
    res = _run(app, ["stats", str(p), "--format", "yang"])
    assert res.exit_code == 2 and "--format must be one of music-avqa, avqa-yang" in res.output
    # the first entry is Music-AVQA, a later one AVQA-Yang: the first alone would have decided it
    p.write_text(json.dumps([music, dict(music, question_id=2), yang]))
    for extra in ([], ["--skip-bad"], ["--format", "music-avqa"], ["--format", "avqa-yang"]):
        res = _run(app, ["stats", str(p), *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert "m.json: mixes Music-AVQA and AVQA-Yang entries: entry 2 is an AVQA-Yang entry" in " ".join(res.output.split())


@needs_real
def test_stats_format_on_the_real_file(app):
    res = _run(app, ["stats", str(REAL / "avqa-val.json"), "--json", "--format", "music-avqa"])
    assert res.exit_code == 0 and json.loads(res.output)["questions"] == 4568
    res = _run(app, ["stats", str(REAL / "avqa-val.json"), "--format", "avqa-yang"])
    assert res.exit_code == 2 and "not an AVQA-Yang file" in " ".join(res.output.split())


def test_synth_writes_a_loadable_world_and_refuses_to_overwrite(app, tmp_path):
    out = tmp_path / "w"
    args = ["synth", "--out", str(out), "--videos", "4", "--seed", "1", "--duration", "4"]
    res = _run(app, args)
    assert res.exit_code == 0, res.output
    assert len(list((out / "videos").glob("*.mp4"))) == 4 and (out / "world.json").is_file()
    res = _run(app, ["stats", str(out / "annotations" / "avqa-train.json"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["questions"] > 0
    res = _run(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert len(list((out / "videos").glob("*.mp4"))) == 4  # nothing lost
    assert _run(app, [*args, "--overwrite"]).exit_code == 0
    res = _run(app, ["synth", "--out", str(tmp_path / "x"), "--videos", "3", "--width", "100"])
    assert res.exit_code == 2 and "multiple of 6" in res.output
