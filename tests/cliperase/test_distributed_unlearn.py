"""A 2-process CPU (gloo) run equals the single-process run."""

from __future__ import annotations

import json
import socket
import tempfile

import pytest
import torch
from cliperase.runner import run_unlearning
from cliperase_testutil import tiny_config
from mmcore.io import load_safetensors

# Tolerances: gradients are all-reduced (averaged) across processes, so they differ from the
# single-process run only by float32 summation order; Adam's m/sqrt(v) normalisation amplifies such
# differences in near-zero gradient entries up to a fraction of one step (lr = 1e-4 per element).
WEIGHT_ATOL = 1e-4
METRIC_ATOL = 1e-6  # percentages; a flipped prediction on these tiny sets would move them by >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two(fn, args) -> None:
    """accelerate.debug_launcher with a free port (parallel test runs must not collide on 29500)."""
    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with tempfile.NamedTemporaryFile() as tmp, patch_environment(
        world_size=2, master_addr="127.0.0.1", master_port=str(_free_port()), accelerate_mixed_precision="no",
        accelerate_debug_rdv_file=tmp.name, accelerate_use_cpu="yes", gloo_socket_ifname="lo",
    ):
        start_processes(PrepareForLaunch(fn, debug=True), args=args, nprocs=2, start_method="fork")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cliperase", "multidelete"])
def test_two_processes_equal_one(tmp_path, method):
    single = tmp_path / "single"
    ref = run_unlearning(tiny_config(method=method, relearn=tiny_config().relearn.__class__(enabled=False)), single)
    two = tmp_path / "two"
    _launch_two(_worker2, (str(two), method))
    m = json.loads((two / "metrics.json").read_text())
    assert m["world_size"] == 2 and ref["world_size"] == 1
    for phase in ("before", "after"):
        for k in ("forget_accuracy", "retain_accuracy", "test_accuracy", "retain_i2t_R@1", "forget_t2i_R@1"):
            assert m[phase][k] == pytest.approx(ref[phase][k], abs=METRIC_ATOL), (phase, k)
    a, b = load_safetensors(two / "model.safetensors"), load_safetensors(single / "model.safetensors")
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < WEIGHT_ATOL
    from mmcore.distributed import seed_everything
    from mmcore.encoders.clip import create_clip

    seed_everything(0)  # the runs' initial (random) weights
    orig = create_clip("mm-micro-clip").model.state_dict()
    moved = max((b[k] - orig[k]).abs().max().item() for k in b)
    assert moved > 10 * diff  # the runs trained; their difference is small against that
    # only the main process writes: one log line per logged step, not two
    assert (two / "log.jsonl").read_text().count("\n") == (single / "log.jsonl").read_text().count("\n")


def _worker2(out: str, method: str) -> None:
    from accelerate.state import AcceleratorState

    # The forked child inherits the parent's single-process accelerate state singleton: drop it.
    AcceleratorState._reset_state(True)
    torch.set_num_threads(1)
    base = tiny_config()
    cfg = tiny_config(method=method, relearn=base.relearn.__class__(enabled=False),
                      accelerator=base.accelerator.__class__(cpu=True, log_with="none"))
    run_unlearning(cfg, out, overwrite=True)
