"""A 2-process CPU (gloo) run equals the single-process run."""

from __future__ import annotations

import json

import pytest
import torch
from cliperase.recipes.runner import run_unlearning
from cliperase_testutil import tiny_config
from mmcore.distributed import launch_cpu_processes
from mmcore.io import load_safetensors

# Tolerances: gradients are all-reduced (averaged) across processes, so they differ from the
# single-process run only by float32 summation order. Adam's m/sqrt(v) normalisation turns gradient
# entries at float-noise level into sizeable steps, so weights are compared by the L2 norm of their
# difference relative to the L2 norm of the update itself (||w2 - w1|| / ||w1 - w0||).
REL_UPDATE_TOL = 0.1
# Metrics (percent) may differ by at most ONE item of the evaluated set: the micro model has random
# weights, so many similarities are near-ties that a float32 difference can flip.


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cliperase", "multidelete"])
def test_two_processes_equal_one(tmp_path, method):
    single = tmp_path / "single"
    ref = run_unlearning(tiny_config(method=method, relearn=tiny_config().relearn.__class__(enabled=False)), single)
    two = tmp_path / "two"
    launch_cpu_processes(_worker2, (str(two), method), num_processes=2)
    m = json.loads((two / "metrics.json").read_text())
    assert m["world_size"] == 2 and ref["world_size"] == 1
    sz = ref["sizes"]
    for phase in ("before", "after"):
        r = ref[phase]["retrieval"]
        one_item = {"forget_accuracy": 100 / sz["test_forget"], "forget_train_accuracy": 100 / sz["forget"],
                    "retain_accuracy": 100 / sz["retain"],
                    "test_accuracy": 100 / sz["test_retain"], "retain_i2t_R@1": 100 / r["retain"]["n_images"],
                    "forget_t2i_R@1": 100 / r["forget"]["n_texts"]}
        for k, tol in one_item.items():
            assert m[phase][k] == pytest.approx(ref[phase][k], abs=tol + 1e-9), (phase, k)
        # most metrics agree exactly
        same = sum(m[phase][k] == pytest.approx(ref[phase][k], abs=1e-9) for k in one_item)
        assert same >= 4, (phase, same)
    a, b = load_safetensors(two / "model.safetensors"), load_safetensors(single / "model.safetensors")
    from mmcore.distributed import seed_everything
    from mmcore.encoders.clip import create_clip

    seed_everything(0)  # the runs' initial (random) weights
    orig = create_clip("mm-micro-clip").model.state_dict()
    diff = sum(((a[k] - b[k]) ** 2).sum().item() for k in a) ** 0.5
    moved = sum(((b[k] - orig[k]) ** 2).sum().item() for k in b) ** 0.5
    assert moved > 0
    assert diff / moved < REL_UPDATE_TOL, (diff, moved)
    # only the main process writes: one log line per logged step, not two
    assert (two / "log.jsonl").read_text().count("\n") == (single / "log.jsonl").read_text().count("\n")


def _worker2(out: str, method: str) -> None:
    from accelerate.state import AcceleratorState

    # A child must not reuse a single-process accelerate state singleton: drop any.
    AcceleratorState._reset_state(True)
    torch.set_num_threads(1)
    base = tiny_config()
    cfg = tiny_config(method=method, relearn=base.relearn.__class__(enabled=False),
                      accelerator=base.accelerator.__class__(cpu=True, log_with="none"))
    run_unlearning(cfg, out, overwrite=True)
