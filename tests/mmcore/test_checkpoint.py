import os

import pytest
import torch
from mmcore.checkpoint import load_model_weights, load_training_state, save_model, save_training_state
from mmcore.errors import DataError, MMError


def _train(model, opt, sched, steps, gen):
    for _ in range(steps):
        x = torch.randn(8, 4, generator=gen)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _fresh():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return m, opt, sched


def test_resume_equals_uninterrupted(tmp_path):
    m1, o1, s1 = _fresh()
    _train(m1, o1, s1, 10, torch.Generator().manual_seed(1))

    m2, o2, s2 = _fresh()
    g = torch.Generator().manual_seed(1)
    _train(m2, o2, s2, 5, g)
    save_training_state(tmp_path / "ck", m2, o2, s2, step=5, extra={"gen": g.get_state().tolist()})
    m3, o3, s3 = _fresh()
    state = load_training_state(tmp_path / "ck", m3, o3, s3)
    g3 = torch.Generator()
    g3.set_state(torch.tensor(state["extra"]["gen"], dtype=torch.uint8))
    _train(m3, o3, s3, 5, g3)
    assert state["step"] == 5
    for a, b in zip(m1.parameters(), m3.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_is_replaced_atomically(tmp_path):
    m, o, s = _fresh()
    save_training_state(tmp_path / "ck", m, o, s, step=1)
    save_training_state(tmp_path / "ck", m, o, s, step=2)
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    assert sorted(os.listdir(tmp_path / "ck")) == ["model.safetensors", "optimizer.safetensors", "state.json"]


def test_wrong_architecture_is_a_clear_error(tmp_path):
    save_model(torch.nn.Linear(4, 3), tmp_path / "w.safetensors")
    with pytest.raises(DataError, match="does not match the model architecture.*shape"):
        load_model_weights(torch.nn.Linear(5, 3), tmp_path / "w.safetensors")
    with pytest.raises(DataError, match="missing key"):
        load_model_weights(torch.nn.Sequential(torch.nn.Linear(4, 3)), tmp_path / "w.safetensors")


def test_resume_without_checkpoint(tmp_path):
    m, o, s = _fresh()
    with pytest.raises(MMError, match="no checkpoint"):
        load_training_state(tmp_path / "nothing", m, o, s)
