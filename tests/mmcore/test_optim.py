import math

import numpy as np
import pytest
import torch
from mmcore.optim import adam, lr_schedule, schedule_factor, warmup_factor


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(37, 5, generator=g)), torch.nn.Parameter(torch.randn(11, generator=g))]


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_is_fused_on_cpu_and_matches_the_reference_update(decoupled):
    a, b = _params(0), _params(0)
    opt = adam(a, 1e-2, weight_decay=0.1, decoupled=decoupled, betas=(0.9, 0.98), eps=1e-6)
    ref_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = ref_cls(b, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6, foreach=False)
    assert opt.param_groups[0]["fused"] is True and isinstance(opt, ref_cls)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in a]
        for p, q, gr in zip(a, b, grads, strict=True):
            p.grad, q.grad = gr.clone(), gr.clone()
        opt.step()
        ref.step()
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_adam_takes_param_groups_and_falls_back_for_non_float():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = adam([{"params": [p], "weight_decay": 0.0}], 1e-3, decoupled=True)
    assert opt.param_groups[0]["fused"] is True
    # Fused kernels need floating point tensors on one CPU/CUDA device; anything else gets the default kernel.
    opt = adam([torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))], 1e-3)
    assert not opt.param_groups[0]["fused"]


# The schedules the training loops used before they shared mmcore.optim.lr_schedule, written out:
# the shared one must give the same learning rate at every step.
def _old_clip_pretrain(warmup, total):  # mmcore.clip_train
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def _old_diffusion(warmup, total):  # cliperase.recipes.diffusion_pretrain
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + np.cos(np.pi * min(1.0, progress))) * 0.9 + 0.1
    return f


def _old_unlearn_cosine(steps):  # cliperase.trainer, lr_schedule="cosine"
    return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))


def _old_sasrnet_warmup(step, warmup_steps):  # sasrnet.recipes.train.set_lr
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def _lrs(sched_of, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    sched = sched_of(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("warmup,total", [(30, 400), (2, 6), (1, 4), (0, 50), (100, 3000), (10, 10)])
def test_warmup_cosine_equals_the_pretraining_schedules(warmup, total):
    new = _lrs(lambda o: lr_schedule(o, total, warmup=warmup), total + 5)
    old = _lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, _old_clip_pretrain(warmup, total)), total + 5)
    assert new == old  # exactly, step for step
    new = _lrs(lambda o: lr_schedule(o, total, warmup=warmup, floor=0.1), total + 5)
    old = _lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, _old_diffusion(warmup, total)), total + 5)
    assert new == old
    assert [schedule_factor(s, total, kind="constant", warmup=warmup) for s in range(total)] == [
        (s + 1) / warmup if s < warmup else 1.0 for s in range(total)]


@pytest.mark.parametrize("steps", [4, 10, 50, 200])
def test_unlearning_schedules(steps):
    assert _lrs(lambda o: lr_schedule(o, steps, kind="constant"), steps + 2) == [0.3] * (steps + 2)
    new = _lrs(lambda o: lr_schedule(o, steps, kind="cosine"), steps + 2)
    old = _lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, _old_unlearn_cosine(steps)), steps + 2)
    # The one place the shared schedule is not bit-identical: it takes pi * (s / steps) where the old
    # unlearning lambda took (pi * s) / steps (the pretraining association, kept exact above); the
    # rounding differs in the last bit of the angle, up to ~1e-14 relative where the factor nears 0.
    assert new == pytest.approx(old, rel=1e-13, abs=1e-16)
    assert new[0] == 0.3 and new[steps] == 0.0 and new[steps + 1] == 0.0


@pytest.mark.parametrize("warmup", [0, 1, 5, 40])
def test_warmup_factor_equals_sasrnet_warmup(warmup):
    assert [warmup_factor(s, warmup) for s in range(100)] == [_old_sasrnet_warmup(s, warmup) for s in range(100)]


def test_lr_schedule_rejects_unknown_kind():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        lr_schedule(torch.optim.SGD([p], lr=0.1), 10, kind="linear")
