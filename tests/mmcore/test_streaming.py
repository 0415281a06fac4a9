"""Streaming tar shards (mmcore.data.wds: stream, records, layout) on shards written here in the img2dataset layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore.data.loading import default_num_workers
from mmcore.data.records import ImageTextData
from mmcore.data.shapes import make_shapes
from mmcore.data.wds.layout import resolve_shards, shard_paths, split_shards, write_shard_splits
from mmcore.data.wds.records import load_wds, load_wds_holdout, write_shards
from mmcore.data.wds.stream import open_wds_stream
from mmcore.errors import DataError, MMError
from PIL import Image


def _png_bytes(value: int, size: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def shapes_shards(tmp_path_factory) -> tuple[Path, ImageTextData]:
    """64 shapes images as 4 lossless shards of 16, with classes and templates (clip_benchmark's files)."""
    root = tmp_path_factory.mktemp("shards")
    data = make_shapes(64, 0, image_size=16)
    write_shards(data.records, root, per_shard=16, image_format="png", classnames=data.classnames,
                 templates=data.templates)
    return root, data


def _ids(stream, **kw) -> list[str]:
    return [i for b in stream.batches(None, 8, **kw) for i in b["id"]]


def test_write_shards_is_the_img2dataset_layout(shapes_shards):
    root, data = shapes_shards
    assert [p.name for p in shard_paths(root)] == ["00000.tar", "00001.tar", "00002.tar", "00003.tar"]
    with tarfile.open(root / "00001.tar") as tf:
        names = tf.getnames()[:4]
        meta = json.loads(tf.extractfile("0000100000.json").read())
    assert sorted(names) == ["0000100000.cls", "0000100000.json", "0000100000.png", "0000100000.txt"]
    assert meta["id"] == data.records[16].id and meta["caption"] == data.records[16].captions[0]
    assert (root / "classnames.txt").read_text().split("\n")[:2] == data.classnames[:2]


def test_stream_yields_every_sample_decoded_in_workers(shapes_shards):
    root, data = shapes_shards
    stream = open_wds_stream(root, "all")
    assert stream.classnames == data.classnames and stream.templates == data.templates
    batches = list(stream.batches(None, 8, num_workers=0))
    images = torch.cat([b["image"] for b in batches])
    assert images.shape == (64, 3, 16, 16)
    want = torch.from_numpy(np.stack([r.image for r in data.records])).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(images, want)  # PNG: lossless, in shard order
    assert [c for b in batches for c in b["caption"]] == [r.captions[0] for r in data.records]
    assert torch.cat([b["label"] for b in batches]).tolist() == [r.label for r in data.records]
    two = _ids(stream, num_workers=2)  # each worker reads its own shards; every sample exactly once
    assert sorted(two) == sorted(_ids(stream, num_workers=0)) and len(set(two)) == 64
    assert two != _ids(stream, num_workers=0)  # interleaved: the workers really split the shards


def test_stream_splits_shards_across_processes(shapes_shards):
    root, _ = shapes_shards
    stream = open_wds_stream(root, "all")
    parts = []
    for rank in range(3):
        pipe = stream.pipeline(None, 8, rank=rank, world=3)
        parts.append([i for b in pipe for i in b["id"]])
    shards_seen = [sorted({i.split("/")[0] for i in p}) for p in parts]
    assert shards_seen == [["00000", "00003"], ["00001"], ["00002"]]
    assert sum(map(len, parts)) == 64 and len(set().union(*parts)) == 64


def test_stream_limit_and_worker_default(shapes_shards, monkeypatch):
    root, _ = shapes_shards
    assert len(_ids(open_wds_stream(root, "all", limit=13), num_workers=2)) == 13
    monkeypatch.setenv("MM_NUM_WORKERS", "3")
    assert default_num_workers() == 3
    monkeypatch.setenv("MM_NUM_WORKERS", "x")
    with pytest.raises(MMError, match="MM_NUM_WORKERS"):
        default_num_workers()
    monkeypatch.delenv("MM_NUM_WORKERS")
    assert 0 <= default_num_workers() <= 8


def test_stream_reports_bad_samples_by_member(tmp_path):
    shards = tmp_path / "s"
    shards.mkdir()
    _tar(shards / "00000.tar", {"a.jpg": _png_bytes(1), "a.txt": b"good", "b.png": b"corrupt", "b.txt": b"bad image",
                                "c.txt": b"no image", "d.png": _png_bytes(4), "d.json": b'{"caption": "from json"}'})
    (shards / "00001.tar").write_bytes((shards / "00000.tar").read_bytes()[:542])  # truncated inside a.jpg
    stream = open_wds_stream(shards, "train")
    with pytest.raises(DataError, match=r"00000.tar:b.png: cannot read image.*--skip-bad"):
        _ids(stream, num_workers=1)
    stream.skip_bad = True
    ids = _ids(stream, num_workers=0)
    assert ids == ["00000/a", "00000/d"]
    assert stream.skipped == 3  # the corrupt image, the caption-only sample, the truncated shard
    _tar(tmp_path / "evil.tar", {"../../evil.png": _png_bytes(1), "../../evil.txt": b"x"})
    with pytest.raises(DataError, match="escapes the data root"):  # even with skip_bad
        _ids(open_wds_stream(tmp_path / "evil.tar", skip_bad=True), num_workers=0)


def test_splits_by_shard_are_named_and_reproducible(tmp_path, shapes_shards):
    names = [f"{i:05d}" for i in range(20)]
    a = split_shards(names, 0.1, seed=0)
    assert a == split_shards(list(reversed(names)), 0.1, seed=0) and len(a["test"]) == 2
    assert set(a["train"]) | set(a["test"]) == set(names) and not set(a["train"]) & set(a["test"])
    assert split_shards(names, 0.1, seed=1) != a
    bigger = split_shards([*names, *(f"{i:05d}" for i in range(20, 25))], 0.1, seed=0)
    assert set(a["test"]) <= set(bigger["test"]) | set(bigger["train"]) and len(bigger["test"]) == 3
    with pytest.raises(MMError, match="at least 2 shards"):
        split_shards(["00000"], 0.5)

    root, _ = shapes_shards
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    written = json.loads(write_shard_splits(copy, 0.25, seed=3).read_text())
    test, how = resolve_shards(copy, "test")
    assert [p.stem for p in test] == written["test"] and len(test) == 1 and "splits.json" in how
    assert len(resolve_shards(copy, "train")[0]) == 3 and len(resolve_shards(copy, "all")[0]) == 4
    with pytest.raises(DataError, match="no split 'val'"):
        resolve_shards(copy, "val")
    (tmp_path / "layout" / "test").mkdir(parents=True)  # clip_benchmark's ROOT/SPLIT/*.tar
    shutil.copy(root / "00002.tar", tmp_path / "layout" / "test")
    assert resolve_shards(tmp_path / "layout", "test")[0] == [tmp_path / "layout" / "test" / "00002.tar"]
    assert len(shard_paths(f"{root}/{{00001..00002}}.tar")) == 2


def test_load_wds_records_read_images_from_the_shard(shapes_shards):
    root, data = shapes_shards
    idx = load_wds(root, "all")
    assert len(idx) == 64 and idx.classnames == data.classnames
    r = idx.records[20]
    assert r.image_bytes is None and r.image is None and r.tar_member[0].endswith("00001.tar")
    assert np.array_equal(np.asarray(r.load_image()), data.records[20].image) and r.label == data.records[20].label
    train, held = load_wds_holdout(root, 0.25, seed=0)
    assert held.name == "wds-holdout" and len(held.attrs["shards"]) == 1 and len(train) + len(held) == 64
    assert {i.id.split("/")[0] for i in held.records} == set(held.attrs["shards"])
    assert not {r.id for r in train.records} & {r.id for r in held.records}
