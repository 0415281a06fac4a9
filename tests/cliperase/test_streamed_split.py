"""Unlearning over webdataset shards with a keyword forget set (cliperase.streamed_split): D_f as records
with tar offsets, D_r streamed from the shards, never loaded as a record list."""

from __future__ import annotations

import dataclasses

import pytest
from cliperase.config import ForgetSpec, RelearnConfig
from cliperase.forget_sets import split_forget_retain
from cliperase.recipes.runner import run_unlearning
from cliperase.streamed_split import load_streamed_split, streams_apply
from cliperase_testutil import tiny_config
from mmcore.errors import MMError


@pytest.fixture(scope="module")
def easy_shards(easy_world, tmp_path_factory):
    """The easy world's 400 images (train and held-out) as 10 lossless shards of 40, with class names."""
    from mmcore.data.wds.records import write_shards

    _, split = easy_world
    records = split.forget.records + split.retain.records + split.test_forget.records + split.test_retain.records
    root = tmp_path_factory.mktemp("easy_shards")
    write_shards(records, root, per_shard=40, image_format="png", classnames=split.retain.classnames,
                 templates=split.retain.templates)
    return root


def _cfg(model_dir, root, **kw):
    return tiny_config(model=str(model_dir), dataset="wds", data_root=str(root), forget=ForgetSpec(keyword="circle"),
                       relearn=RelearnConfig(enabled=False), eval_batch_size=256, **kw)


def test_streamed_split_has_the_record_split_sizes_and_bounded_samples(easy_world, easy_shards, tmp_path):
    from mmcore.data.wds.records import load_wds_holdout

    cfg = _cfg(easy_world[0], easy_shards, eval_max_samples=12)
    assert streams_apply(cfg) and not streams_apply(dataclasses.replace(cfg, limit=100))
    split = load_streamed_split(cfg, tmp_path)
    train, test = load_wds_holdout(easy_shards, cfg.holdout_fraction, cfg.seed)
    ref = split_forget_retain(train, test, cfg.forget)
    sizes = split.sizes()
    assert {k: sizes[k] for k in ("forget", "retain")} == {k: ref.sizes()[k] for k in ("forget", "retain")}
    assert split.stream is not None and split.stream.forget_ids == frozenset(r.id for r in ref.forget.records)
    assert [r.id for r in split.forget.records] == [r.id for r in ref.forget.records]  # D_f whole, as records
    assert split.forget.records[0].tar_member is not None  # read by one seek, no image bytes held
    assert len(split.retain) == 12 and sizes["retain_eval_sample"] == 12  # D_r: an evaluation sample
    assert {r.id for r in split.retain.records} <= {r.id for r in ref.retain.records}
    assert len(split.test_forget) + len(split.test_retain) == min(12, len(ref.test_forget)) + min(12, len(ref.test_retain))
    assert all("circle" in r.captions[0] for r in split.test_forget.records)
    shard_of = {r.id: r.tar_member[0] for r in train.records}
    assert set(split.stream.retain_shards) == {shard_of[r.id] for r in ref.retain.records}


@pytest.mark.slow
def test_unlearning_streams_the_shards_and_forgets(easy_world, easy_shards, tmp_path):
    cfg = _cfg(easy_world[0], easy_shards, steps=30, lr=1e-3, batch_size=16, forget_batch_size=16, num_workers=1)
    m = run_unlearning(cfg, tmp_path / "run")
    assert m["sizes"]["retain_eval_sample"] == m["sizes"]["retain"]  # small enough to evaluate whole
    assert (tmp_path / "run" / "forget_pass" / "shards.jsonl").is_file()
    assert m["before"]["forget_train_accuracy"] > 80
    assert m["after"]["forget_train_accuracy"] < m["before"]["forget_train_accuracy"] - 40
    assert m["after"]["retain_accuracy"] > 50


def test_retrain_refuses_a_streamed_split_before_writing(easy_world, easy_shards, tmp_path):
    with pytest.raises(MMError, match="stream"):
        run_unlearning(_cfg(easy_world[0], easy_shards, method="retrain"), tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_processes_stream_their_own_shares(easy_world, easy_shards, tmp_path):
    """Each process draws its own share of the shards (texts all-gathered, features gathered with gradients)."""
    import json

    from mmcore.distributed import launch_cpu_processes

    launch_cpu_processes(_stream_worker, (str(easy_world[0]), str(easy_shards), str(tmp_path / "two")), num_processes=2)
    m = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["sizes"]["retain_eval_sample"] == m["sizes"]["retain"]
    assert m["after"]["forget_train_accuracy"] < m["before"]["forget_train_accuracy"] - 40
    assert (tmp_path / "two" / "log.jsonl").read_text().count("\n") >= 1


def _stream_worker(model_dir: str, root: str, out: str) -> None:
    import torch
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    torch.set_num_threads(1)
    base = tiny_config()
    cfg = _cfg(model_dir, root, steps=30, lr=1e-3, batch_size=16, forget_batch_size=16, num_workers=0,
               accelerator=base.accelerator.__class__(cpu=True, log_with="none"))
    run_unlearning(cfg, out, overwrite=True)
