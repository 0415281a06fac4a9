import pytest
import torch
from mmcore.optim import adam


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
