import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from mmcore.distributed import (
    JsonlLogger,
    StepBatches,
    epoch_permutation,
    gather_with_grad,
    gathered_order,
    global_batches,
    grouped_global_batches,
    seed_everything,
)
from mmcore.errors import MMError


@given(n=st.integers(1, 200), bs=st.integers(1, 64), seed=st.integers(0, 10**6), epoch=st.integers(0, 50))
def test_global_batches_cover_each_index_once(n, bs, seed, epoch):
    batches = global_batches(n, bs, seed, epoch, drop_last=False)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))
    assert all(len(b) == bs for b in batches[:-1])
    assert global_batches(n, bs, seed, epoch, drop_last=False) == batches


@given(keys=st.lists(st.integers(0, 9), min_size=1, max_size=120), bs=st.integers(1, 32), k=st.integers(1, 6),
       seed=st.integers(0, 10**6), epoch=st.integers(0, 50))
def test_grouped_global_batches_visit_each_sample_once(keys, bs, k, seed, epoch):
    keys = [f"v{x}" for x in keys]
    batches = grouped_global_batches(keys, bs, seed, epoch, k)
    flat = [i for b in batches for i in b]
    assert len(flat) == (len(keys) // bs) * bs and len(set(flat)) == len(flat)  # only the last partial batch dropped
    assert all(len(b) == bs for b in batches)
    assert grouped_global_batches(keys, bs, seed, epoch, k) == batches


def test_grouped_batches_share_keys_and_reshuffle_per_epoch():
    keys = [f"v{i // 8}" for i in range(800)]  # 100 videos x 8 questions
    b0 = grouped_global_batches(keys, 32, 1, 0, 4)
    assert max(len({keys[i] for i in b}) for b in b0) <= 9  # ~8 runs of 4 per batch of 32
    free = global_batches(800, 32, 1, 0)
    assert min(len({keys[i] for i in b}) for b in free) > 9  # a free shuffle mixes many more videos
    assert grouped_global_batches(keys, 32, 1, 1, 4) != b0


def test_epochs_differ_and_seed_matters():
    assert epoch_permutation(50, 0, 0) != epoch_permutation(50, 0, 1)
    assert epoch_permutation(50, 0, 0) != epoch_permutation(50, 1, 0)


def test_seed_everything_is_reproducible():
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_gather_with_grad_is_identity_on_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    gather_with_grad(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(3, 2))


def test_jsonl_logger_appends_records(tmp_path):
    log = JsonlLogger(tmp_path / "log.jsonl")
    log.log({"loss": 1.0}, step=1)
    log.log({"loss": 0.5}, step=2)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines] == [1.0, 0.5] and lines[1]["step"] == 2


def test_deterministic_algorithms_on_cpu_by_default_and_a_config_choice():
    import torch
    from mmcore.distributed import AcceleratorConfig, build_accelerator

    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        build_accelerator(AcceleratorConfig(cpu=True, log_with="none", deterministic=False))
        assert not torch.are_deterministic_algorithms_enabled()  # "never": left as it was
        build_accelerator(AcceleratorConfig(cpu=True, log_with="none"))  # None: on, since this is the CPU
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)


def test_third_party_progress_bars_are_silenced():
    import diffusers.utils.logging as dl
    import transformers.utils.logging as tl
    from mmcore.distributed import quiet_third_party_progress

    dl.enable_progress_bar()
    tl.enable_progress_bar()
    assert dl.is_progress_bar_enabled() and tl.is_progress_bar_enabled()
    quiet_third_party_progress()
    assert not dl.is_progress_bar_enabled() and not tl.is_progress_bar_enabled()


def test_step_batches_walk_the_epochs_of_global_batches():
    sb = StepBatches(10, 3, seed=4)
    assert sb.per_epoch == 3
    by_step = [sb.at(s) for s in range(7)]
    assert by_step[:3] == global_batches(10, 3, 4, 0) and by_step[3:6] == global_batches(10, 3, 4, 1)
    assert by_step[6] == global_batches(10, 3, 4, 2)[0] and sb.epoch(6) == 2
    assert StepBatches(10, 3, seed=4).at(4) == by_step[4]  # no state: a resumed run sees the same batch


def test_step_batches_for_processes_round_to_equal_shards():
    sb = StepBatches.for_processes(7, 16, seed=0, world=2, what="forget")
    assert sb.batch_size == 6 and len(sb.at(0)) == 6  # min(16, 7) rounded down to a multiple of 2
    with pytest.raises(MMError, match="forget set has 1 sample"):
        StepBatches.for_processes(1, 8, seed=0, world=2, what="forget")


def test_gathered_order_is_the_concatenated_round_robin_shards():
    batch = [10, 11, 12, 13, 14, 15]
    shards = [batch[r::3] for r in range(3)]
    assert gathered_order(batch, 3) == [i for s in shards for i in s] == [10, 13, 11, 14, 12, 15]
    assert gathered_order(batch, 1) == batch
