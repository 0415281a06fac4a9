"""Training-mode details of the unlearning loop: frozen BatchNorm statistics and the lr schedule."""

import dataclasses

import pytest
import torch
from cliperase.forget_sets import split_forget_retain
from cliperase.runner import load_data
from cliperase.trainer import _make_scheduler, train_mode, unlearn
from cliperase_testutil import tiny_config
from mmcore.distributed import AcceleratorConfig, build_accelerator
from mmcore.encoders.clip import create_clip


def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("freeze", [True, False])
def test_train_mode_freezes_only_batchnorm_statistics(freeze):
    bundle = create_clip("mm-tiny-clip")  # ResNet image tower: has BatchNorm
    model = bundle.model
    before = _bn_buffers(model)
    assert before, "mm-tiny-clip is expected to have BatchNorm layers"
    train_mode(model, freeze)
    assert model.training and model.transformer.training  # dropout etc. still in train mode
    model.encode_image(torch.rand(4, 3, 32, 32) * 3)
    after = _bn_buffers(model)
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    assert unchanged is freeze


def test_unlearning_with_freeze_norm_stats_keeps_batchnorm_statistics():
    cfg = tiny_config(model="mm-tiny-clip", steps=2, checkpoint_every=0, freeze_norm_stats=True)
    acc = build_accelerator(AcceleratorConfig(cpu=True, log_with="none"))
    bundle = create_clip("mm-tiny-clip")
    train, test = load_data(cfg, bundle.image_size)
    split = split_forget_retain(train, test, cfg.forget)
    before = _bn_buffers(bundle.model)
    weights = {k: v.clone() for k, v in bundle.model.state_dict().items() if k.endswith("conv1.weight")}
    res = unlearn(bundle, split, cfg, acc)
    after = res.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(weights[k], after[k]) for k in weights)  # the weights did train


def test_cosine_schedule_decays_to_zero_and_constant_stays():
    p = torch.nn.Parameter(torch.zeros(1))
    for schedule, expect in (("cosine", [1.0, 0.5, 0.0]), ("constant", [1.0, 1.0, 1.0])):
        cfg = dataclasses.replace(tiny_config(), lr=0.2, steps=4, lr_schedule=schedule)
        opt = torch.optim.SGD([p], lr=cfg.lr)
        sched = _make_scheduler(cfg, opt)
        seen = []
        for step in range(5):
            if step in (0, 2, 4):
                seen.append(opt.param_groups[0]["lr"] / cfg.lr)
            opt.step()
            sched.step()
        assert seen == pytest.approx(expect, abs=1e-9), schedule


def test_retain_preserving_variant_is_a_valid_config():
    from cliperase.config import RETAIN_PRESERVING, UnlearnConfig

    cfg = dataclasses.replace(tiny_config(), **RETAIN_PRESERVING)
    cfg.validate()
    assert {k: getattr(cfg, k) for k in RETAIN_PRESERVING} == RETAIN_PRESERVING
    defaults = UnlearnConfig()
    assert all(getattr(defaults, k) != v for k, v in RETAIN_PRESERVING.items())  # every field is a change


def test_readme_set_overrides_give_the_retain_preserving_variant():
    import re
    from pathlib import Path

    from cliperase.config import RETAIN_PRESERVING, UnlearnConfig
    from mmcore.config import resolve_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme[readme.index("--out runs/rp"):].split("\nmm ", 1)[0]
    sets = dict(s.split("=", 1) for s in re.findall(r"--set (\S+)", block))
    cfg = resolve_config(UnlearnConfig, None, sets)
    assert {k: getattr(cfg, k) for k in RETAIN_PRESERVING} == RETAIN_PRESERVING
