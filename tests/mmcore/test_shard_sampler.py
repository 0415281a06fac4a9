"""Endless shuffled training batches from shards (mmcore.data.wds.shard_sampler) and bounded record samples
(mmcore.data.wds.records.sample_wds_records), on shards written here in the img2dataset layout."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
from mmcore.data.shapes import make_shapes
from mmcore.data.wds.layout import shard_paths
from mmcore.data.wds.records import load_wds, sample_wds_records, write_shards
from mmcore.data.wds.shard_sampler import IdFilter, shuffled_shard_batches
from mmcore.errors import DataError


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, frozenset[str], list[str]]:
    """64 shapes images in 4 lossless shards of 16; the circle ids and every id."""
    root = tmp_path_factory.mktemp("sampler")
    data = make_shapes(64, 0, image_size=16)
    write_shards(data.records, root, per_shard=16, image_format="png", classnames=data.classnames)
    recs = load_wds(root, "all").records
    circles = frozenset(r.id for r in recs if "circle" in r.captions[0])
    assert 0 < len(circles) < 64
    return root, circles, [r.id for r in recs]


def _draw(root: Path, n_batches: int, batch_size: int = 6, **kw) -> list[list[str]]:
    it = shuffled_shard_batches(shard_paths(root), None, batch_size, **kw)
    return [b["id"] for b in islice(it, n_batches)]


def test_batches_are_exact_filtered_and_seeded(shards):
    root, circles, ids = shards
    keep = IdFilter(circles, inside=False)
    a = _draw(root, 12, keep=keep, seed=0, num_workers=0)
    assert all(len(b) == 6 for b in a)
    drawn = [i for b in a for i in b]
    assert not set(drawn) & circles and set(drawn) <= set(ids)
    assert _draw(root, 12, keep=keep, seed=0, num_workers=0) == a  # reproducible
    assert _draw(root, 12, keep=keep, seed=1, num_workers=0) != a  # and the seed matters
    only = _draw(root, 3, batch_size=4, keep=IdFilter(circles, inside=True), seed=0, num_workers=0)
    assert {i for b in only for i in b} <= circles


def test_every_sample_comes_round_endlessly_with_workers(shards):
    root, circles, ids = shards
    n = len(ids) - len(circles)
    keep = IdFilter(circles, inside=False)
    drawn = [i for b in _draw(root, 3 * n // 6, keep=keep, seed=0, n_samples=n, num_workers=2) for i in b]
    counts = Counter(drawn)
    assert set(counts) == set(ids) - circles  # three epochs' worth: every retain sample seen
    assert max(counts.values()) <= 6


@pytest.mark.parametrize("one_shard", [False, True])
def test_processes_draw_disjoint_shares(tmp_path, shards, one_shard):
    """Four shards: each process reads its own; one shard: each keeps every other sample of it."""
    root, _, ids = shards
    src = root
    if one_shard:
        src = tmp_path / "one"
        write_shards(load_wds(root, "all").records[:16], src, per_shard=16, image_format="png")
    n = 16 if one_shard else 64
    parts = [[i for b in _draw(src, n // 2 // 4, batch_size=4, seed=0, shuffle_buffer=1, num_workers=0, rank=r,
                                world=2) for i in b] for r in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert len(set(parts[0]) | set(parts[1])) == n


def test_a_bad_image_names_its_member_unless_skipped(tmp_path, shards):
    root, _, _ = shards
    bad = tmp_path / "bad"
    bad.mkdir()
    good = shard_paths(root)[0]
    with tarfile.open(good) as src, tarfile.open(bad / "00000.tar", "w") as dst:
        for m in src:
            data = src.extractfile(m).read()
            if m.name.endswith(".png") and m.name.startswith("0000000003"):
                data = b"not an image"
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(DataError, match="0000000003"):
        _draw(bad, 4, batch_size=8, seed=0, shuffle_buffer=1, num_workers=0)
    drawn = [i for b in _draw(bad, 4, batch_size=5, seed=0, num_workers=0, skip_bad=True) for i in b]
    assert len(drawn) == 20 and not any(i.endswith("0000000003") for i in drawn)


def test_record_samples_are_bounded_seeded_and_counted(shards):
    root, circles, ids = shards
    parts = {"forget": lambda r: r.id in circles, "retain": lambda r: r.id not in circles}
    whole = sample_wds_records(root, shard_paths(root), parts, None)
    assert [r.id for r in whole["retain"].records] == [i for i in ids if i not in circles]  # shard order
    assert whole["forget"].attrs["n_total"] == len(circles)
    a = sample_wds_records(root, shard_paths(root), parts, 5, seed=0)
    b = sample_wds_records(root, shard_paths(root), parts, 5, seed=1)
    assert len(a["retain"]) == 5 and {r.id for r in a["retain"].records} <= set(ids) - circles
    assert a["retain"].attrs["n_total"] == len(ids) - len(circles)
    assert [r.id for r in a["retain"].records] != [r.id for r in b["retain"].records]
    assert a["retain"].records[0].tar_member is not None  # readable later, no image bytes held
