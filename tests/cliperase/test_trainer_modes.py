"""Training-mode details of the unlearning loop: trained towers, frozen BatchNorm statistics, the lr schedule,
the forget-pair text."""

import dataclasses

import pytest
import torch
from cliperase.forget_sets import split_forget_retain
from cliperase.methods import unlearn
from cliperase.recipes.runner import load_data
from cliperase.training import train_mode
from cliperase_testutil import tiny_config
from mmcore.distributed import AcceleratorConfig, build_accelerator
from mmcore.encoders.clip import create_clip
from mmcore.optim import lr_schedule


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
    # with towers="both": a frozen image tower keeps its statistics anyway (test_towers_decides_which_encoder_trains)
    cfg = tiny_config(model="mm-tiny-clip", steps=2, checkpoint_every=0, freeze_norm_stats=True, towers="both")
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
        sched = lr_schedule(opt, cfg.steps, kind=cfg.lr_schedule)  # as the trainer builds it
        seen = []
        for step in range(5):
            if step in (0, 2, 4):
                seen.append(opt.param_groups[0]["lr"] / cfg.lr)
            opt.step()
            sched.step()
        assert seen == pytest.approx(expect, abs=1e-9), schedule


@pytest.mark.parametrize("towers", ["text", "both"])
def test_towers_decides_which_encoder_trains(towers):
    cfg = tiny_config(model="mm-tiny-clip", steps=2, checkpoint_every=0, towers=towers)
    acc = build_accelerator(AcceleratorConfig(cpu=True, log_with="none"))
    bundle = create_clip("mm-tiny-clip")  # ResNet image tower: BatchNorm statistics could drift too
    train, test = load_data(cfg, bundle.image_size)
    split = split_forget_retain(train, test, cfg.forget)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    after = unlearn(bundle, split, cfg, acc).model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    visual = {k for k in changed if k.startswith("visual.")}
    assert changed - visual, "the text tower must train"
    if towers == "text":
        assert not visual  # weights and BatchNorm statistics alike
    else:
        assert any(k.endswith("weight") for k in visual)


def test_towers_text_matches_both_when_the_image_tower_gets_no_gradient():
    """The frozen-image shortcut (the original's image features reused, no second image forward) changes
    nothing but speed: with the image tower's lr effectively zero, both settings give the same text weights."""
    cfg = tiny_config(steps=2, checkpoint_every=0, towers="text")
    acc = build_accelerator(AcceleratorConfig(cpu=True, log_with="none"))
    results = []
    for towers in ("text", "both"):
        torch.manual_seed(0)  # the same random init for both
        bundle = create_clip("mm-micro-clip")
        if towers == "both":
            bundle.model.visual.requires_grad_(False)  # "both", but nothing in the image tower can move
        train, test = load_data(cfg, bundle.image_size)
        split = split_forget_retain(train, test, cfg.forget)
        res = unlearn(bundle, split, dataclasses.replace(cfg, towers=towers), acc)
        results.append((res.last_log, {k: v for k, v in res.model.state_dict().items() if not k.startswith("visual.")}))
    (log_t, w_t), (log_b, w_b) = results
    assert log_t == pytest.approx(log_b, rel=1e-4, abs=1e-6)  # the second step's FM / RM / CM
    # float rounding of a batched vs sliced image forward, amplified by Adam: far below the 2e-4 two steps move
    assert all(torch.allclose(w_t[k], w_b[k], atol=5e-5) for k in w_t)


def test_forget_text_overrides_text_for_forget_pairs_only():
    from cliperase.training import pair_text
    from mmcore.data.shapes import make_shapes

    data = make_shapes(20, seed=0)
    rec = data.records[0]
    prompts = {t.format(data.classnames[rec.label]) for t in data.templates}
    assert pair_text(rec, data, "prompt", (0, 0, 1, 0)) in prompts
    assert pair_text(rec, data, "caption", (0, 0, 1, 0)) in rec.captions
    with pytest.raises(Exception, match="forget_text"):
        tiny_config(forget_text="captions").validate()
    tiny_config(forget_text="mixed").validate()
    with pytest.raises(Exception, match="towers"):
        tiny_config(towers="image").validate()


def test_paper_setting_is_a_valid_config_and_a_listed_variant():
    from cliperase.config import PAPER_SETTING, UnlearnConfig
    from cliperase.methods import parse_method

    cfg = dataclasses.replace(tiny_config(), **PAPER_SETTING)
    cfg.validate()
    defaults = UnlearnConfig()
    assert all(getattr(defaults, k) != v for k, v in PAPER_SETTING.items())  # every field is a change
    assert parse_method("cliperase-paper") == {"method": "cliperase", **PAPER_SETTING}


def test_readme_set_overrides_give_the_paper_setting():
    import re
    from pathlib import Path

    from cliperase.config import PAPER_SETTING, UnlearnConfig
    from mmcore.config import resolve_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme[readme.index("--out runs/paper"):].split("\nmm ", 1)[0]
    sets = dict(s.split("=", 1) for s in re.findall(r"--set (\S+)", block))
    cfg = resolve_config(UnlearnConfig, None, sets)
    assert {k: getattr(cfg, k) for k in PAPER_SETTING} == PAPER_SETTING


def test_row_subset_embedding_looks_up_like_the_full_table_and_merges_back():
    from cliperase.trainer import RowSubsetEmbedding
    from mmcore.errors import MMError

    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 4)
    sub = RowSubsetEmbedding(emb, torch.tensor([[3, 7, 7], [0, 3, 12]]))
    tokens = torch.tensor([[0, 12, 3], [7, 7, 0]])
    assert torch.equal(sub(tokens), emb(tokens))
    with pytest.raises(MMError, match="outside"):
        sub(torch.tensor([[5]]))
    with torch.no_grad():
        sub.rows[1] += 1.0  # row of token 3 (ids are sorted: 0, 3, 7, 12)
    merged = sub.merged()
    expect = emb.weight.detach().clone()
    expect[3] += 1.0
    assert torch.equal(merged.weight, expect) and merged.weight.requires_grad


def test_unlearning_with_the_row_subset_equals_the_dense_embedding(monkeypatch):
    from cliperase import trainer

    cfg = tiny_config(steps=3, checkpoint_every=0)
    acc = build_accelerator(AcceleratorConfig(cpu=True, log_with="none"))
    states = []
    for use_subset in (True, False):
        monkeypatch.setattr(trainer, "_row_subset_applies", lambda emb, cfg, use=use_subset: use)
        torch.manual_seed(0)
        bundle = create_clip("mm-micro-clip")
        train, test = load_data(cfg, bundle.image_size)
        split = split_forget_retain(train, test, cfg.forget)
        model = unlearn(bundle, split, cfg, acc).model
        assert isinstance(model.token_embedding, torch.nn.Embedding)
        states.append(model.state_dict())
    torch.manual_seed(0)
    init = create_clip("mm-micro-clip").model.token_embedding.weight
    moved = (states[0]["token_embedding.weight"] != init).any(1)
    assert 0 < int(moved.sum()) < 200  # only the rows of tokens in the texts moved
    assert all(torch.allclose(states[0][k], states[1][k], atol=1e-6) for k in states[0])
