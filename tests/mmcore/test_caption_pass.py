"""The caption pass over webdataset shards (mmcore.data.wds.caption_pass): tar .txt members or img2dataset's
parquet, no image decoded, per-shard results appended and a restarted pass skipping finished shards."""

from __future__ import annotations

import json
import re

import pytest
from mmcore.data.shapes import make_shapes
from mmcore.data.wds import caption_pass as cp
from mmcore.data.wds.records import load_wds, write_shards
from mmcore.errors import DataError

CIRCLE = re.compile(r"(?<!\w)circle(?!\w)", re.IGNORECASE)


def _matches(c: str) -> bool:
    return CIRCLE.search(c) is not None


@pytest.fixture()
def shards(tmp_path):
    data = make_shapes(60, 0, image_size=16)
    return write_shards(data.records, tmp_path / "shards", per_shard=20, classnames=data.classnames)


def test_the_pass_finds_the_ids_a_record_scan_finds_without_decoding_an_image(shards, tmp_path, monkeypatch):
    want = [r.id for r in load_wds(shards[0].parent, "all").records if any(_matches(c) for c in r.captions)]
    assert 0 < len(want) < 60
    import PIL.Image

    def no_decoding(*a, **k):
        raise AssertionError("the caption pass decoded an image")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    res = cp.caption_pass(shards, _matches, tmp_path / "run", rule={"keyword": "circle"})
    assert res.ids == want and res.n == 60 and res.n_match == len(want)
    assert list(res.counts) == ["00000", "00001", "00002"] and all(c["n"] == 20 for c in res.counts.values())
    assert set(res.sources.values()) == {"tar"}
    lines = [json.loads(ln) for ln in (tmp_path / "run" / cp.SHARDS_FILE).read_text().splitlines()]
    assert [ln["shard"] for ln in lines] == ["00000", "00001", "00002"]


def test_a_restarted_pass_skips_finished_shards(shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    full = cp.caption_pass(shards, _matches, out, rule={"keyword": "circle"})
    path = out / cp.SHARDS_FILE
    first = path.read_text().splitlines()[0]
    path.write_text(first + "\n" + '{"shard": "00001", "n": 2')  # interrupted while writing shard 2
    read = []
    real = cp._tar_captions
    monkeypatch.setattr(cp, "_tar_captions", lambda s: read.append(s.name) or real(s))
    again = cp.caption_pass(shards, _matches, out, rule={"keyword": "circle"})
    assert read == ["00001.tar", "00002.tar"] and again.resumed == 1
    assert again.ids == full.ids and again.counts == full.counts
    with pytest.raises(DataError, match="rule.json"):
        cp.caption_pass(shards, _matches, out, rule={"keyword": "square"})


def test_img2dataset_parquet_is_read_instead_of_the_tar(shards, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    keys = ["0000000000", "0000000001", "0000000002"]
    table = pa.table({"key": keys, "caption": ["a circle here", "no match", "a circle lost"],
                      "status": ["success", "success", "failed_to_download"]})
    pq.write_table(table, shards[0].with_name("00000.parquet"))
    res = cp.caption_pass(shards[:1], _matches, tmp_path / "run", rule={"keyword": "circle"})
    assert res.sources == {"00000": "parquet"}
    assert res.ids == ["00000/0000000000"] and res.counts["00000"] == {"n": 2, "n_match": 1}
