"""SaSR-Net / AVST / question-only model: shapes, losses, grouping, configs."""

from __future__ import annotations

import pytest
import torch
from mmcore.errors import ConfigError
from sasrnet.config import PRESETS, ModelConfig, model_config
from sasrnet.model import SaSRModule, build_model, compute_loss, hard_assignment

B, T, C, H, W, V, A = 4, 5, 6, 3, 3, 30, 12


def _batch(multiple_choice: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    b = {
        "audio": torch.randn(B, T, 128, generator=g),
        "visual": torch.randn(B, T, C, H, W, generator=g),
        "visual_neg": torch.randn(B, T, C, H, W, generator=g),
        "neg_valid": torch.tensor([True, True, False, True]),
        "question": torch.randint(1, V, (B, 14), generator=g),
        "answer": torch.randint(0, 4 if multiple_choice else A, (B,), generator=g),
        "sources": (torch.rand(B, 22, generator=g) > 0.7).float(),
        "noise_seed": torch.arange(B) * 17,
    }
    if multiple_choice:
        b["choices"] = torch.randint(1, V, (B, 4, 14), generator=g)
    return b


def _cfg(kind: str, **kw) -> ModelConfig:
    return model_config(kind, "cpu-tiny", {"visual_channels": C, "grid_h": H, "grid_w": W, "word_vocab": V,
                                           "n_answers": A, **kw})


def test_paper_config_matches_the_doc():
    cfg = ModelConfig()
    assert (cfg.dim, cfg.n_sources, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.drop_path) == (512, 22, 3, 8, 4.0, 0.1)
    assert (cfg.token_mlp_hidden, cfg.temporal_heads, cfg.w_match, cfg.w_source, cfg.w_cls) == (256, 4, 0.5, 0.5, 0.5)
    assert {"paper", "cpu-small"} <= set(PRESETS)
    with pytest.raises(ConfigError):
        model_config("sasrnet", "huge")
    with pytest.raises(ConfigError):
        model_config("sasrnet", "paper", {"no_such_field": 1})


@pytest.mark.parametrize("kind, terms", [
    ("sasrnet", {"answer", "match", "source", "cls", "loss"}),
    ("avst", {"answer", "match", "loss"}),
    ("blind", {"answer", "loss"}),
])
def test_forward_backward_and_loss_terms(kind, terms):
    torch.manual_seed(0)
    cfg = _cfg(kind)
    model = build_model(cfg)
    batch = _batch()
    out = model(batch)
    assert out["logits"].shape == (B, A)
    loss = compute_loss(cfg, out, batch)
    assert set(loss) == terms
    expected = loss["answer"] + sum(w * loss[k] for k, w in (("match", .5), ("source", .5), ("cls", .5)) if k in loss)
    assert torch.allclose(loss["loss"], expected)
    loss["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter takes part in the loss"
    if kind != "blind":
        assert out["temporal_a"].shape == (B, T) and torch.allclose(out["temporal_a"].sum(-1), torch.ones(B))
    else:  # the question-only model ignores audio and video entirely
        b2 = {**batch, "audio": torch.zeros_like(batch["audio"]), "visual": torch.zeros_like(batch["visual"])}
        model.eval()
        assert torch.equal(model(b2)["logits"], model(batch)["logits"])


def test_sasr_outputs_source_heads_and_one_hot_grouping():
    torch.manual_seed(0)
    cfg = _cfg("sasrnet")
    model = build_model(cfg).eval()
    out = model(_batch())
    assert out["a_prob"].shape == (B, 22) and out["v_prob"].shape == (B, 22)
    assert ((out["a_prob"] > 0) & (out["a_prob"] < 1)).all()
    assert out["cls_logits"].shape == (22, 22)
    for key in ("assign_v", "assign_a"):  # each segment goes to exactly one of the 22 source tokens
        a = out[key]
        assert a.shape == (B, 22, T)
        assert torch.equal(a.sum(1), torch.ones(B, T)) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert isinstance(model.sasr, SaSRModule) and torch.equal(model.sasr.tokens, torch.zeros(22, cfg.dim))
    assert build_model(_cfg("avst")).sasr is None


def test_hard_gumbel_assignment_is_straight_through_and_seeded():
    logits = torch.randn(3, 22, 7, requires_grad=True)
    a = hard_assignment(logits, 1.0, training=True, noise_seed=torch.tensor([1, 2, 3]))
    assert torch.allclose(a.sum(1), torch.ones(3, 7))
    (a * torch.randn_like(a)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # the gradient flows through the softmax
    again = hard_assignment(logits.detach(), 1.0, training=True, noise_seed=torch.tensor([1, 2, 3]))
    assert torch.equal(a.detach(), again)
    eval_a = hard_assignment(logits.detach(), 1.0, training=False, noise_seed=None)
    assert torch.equal(eval_a.argmax(1), logits.detach().argmax(1))


def test_batch_split_gives_the_same_outputs_as_the_full_batch():
    """Per-sample Gumbel seeds make a sample's output independent of its batch-mates: the property
    that lets 1- and 2-process training agree."""
    torch.manual_seed(0)
    cfg = _cfg("sasrnet")
    model = build_model(cfg).train()
    batch = _batch()
    full = model(batch)["logits"]
    halves = []
    for sl in (slice(0, 2), slice(2, 4)):
        halves.append(model({k: v[sl] for k, v in batch.items()})["logits"])
    assert torch.allclose(full, torch.cat(halves), atol=1e-5)


def test_multiple_choice_head_scores_each_choice():
    torch.manual_seed(0)
    for kind in ("sasrnet", "blind"):
        cfg = _cfg(kind, multiple_choice=True)
        model = build_model(cfg)
        batch = _batch(multiple_choice=True)
        out = model(batch)
        assert out["logits"].shape == (B, 4)
        compute_loss(cfg, out, batch)["loss"].backward()
        # permuting the choices permutes the scores
        model.eval()
        perm = torch.tensor([2, 0, 3, 1])
        a = model(batch)["logits"]
        b = model({**batch, "choices": batch["choices"][:, perm]})["logits"]
        assert torch.allclose(a[:, perm], b, atol=1e-5)


@pytest.mark.parametrize("kind", ["sasrnet", "avst"])
def test_answer_loss_reaches_audio_and_visual_inputs(kind):
    """The answer head must see A and V: d CE(answer) / d audio, d visual are non-zero."""
    torch.manual_seed(0)
    cfg = _cfg(kind)
    model = build_model(cfg).eval()
    b = _batch()
    b["audio"].requires_grad_(True)
    b["visual"].requires_grad_(True)
    torch.nn.functional.cross_entropy(model(b)["logits"], b["answer"]).backward()
    assert b["audio"].grad.abs().sum() > 0
    assert b["visual"].grad.abs().sum() > 0


def test_input_standardisation_uses_saved_statistics():
    """set_input_stats(m, s) on raw inputs == identity statistics on (x - m) / s; the stats are buffers (saved)."""
    torch.manual_seed(0)
    cfg = _cfg("avst")
    model = build_model(cfg).eval()
    b = _batch()
    am, ast, vm, vs = torch.randn(128), torch.rand(128) + 0.5, torch.randn(C), torch.rand(C) + 0.5
    ref = model({**b, "audio": (b["audio"] - am) / ast,
                 "visual": (b["visual"] - vm[:, None, None]) / vs[:, None, None]})["logits"]
    model.set_input_stats(am, ast, vm, vs)
    assert torch.allclose(model(b)["logits"], ref, atol=1e-5)
    assert {"audio_mean", "audio_std", "visual_mean", "visual_std"} <= set(model.state_dict())


def test_zero_sasr_init_starts_as_avst_and_its_branches_learn():
    """sasr_init="zero": the SaSR module returns A'' = A, V'' = V, so SaSR-Net computes AVST's answer from
    the same shared weights; one optimizer step makes the zeroed branches non-zero."""
    torch.manual_seed(0)
    avst = build_model(_cfg("avst")).eval()
    sasr = build_model(_cfg("sasrnet", sasr_init="zero")).eval()
    sasr.load_state_dict(avst.state_dict(), strict=False)
    b = _batch()
    assert torch.allclose(sasr(b)["logits"], avst(b)["logits"], atol=1e-6)
    # the paper's init does not (the test can fail)
    paper = build_model(_cfg("sasrnet")).eval()
    paper.load_state_dict(avst.state_dict(), strict=False)
    assert not torch.allclose(paper(b)["logits"], avst(b)["logits"], atol=1e-3)
    sasr.train()
    opt = torch.optim.SGD(sasr.parameters(), lr=0.1)
    compute_loss(sasr.cfg, sasr(b), b)["loss"].backward()
    opt.step()
    assert sasr.sasr.v_back.attn.out_proj.weight.abs().sum() > 0
    assert sasr.sasr.a_blocks[0].mlp[-1].weight.abs().sum() > 0
    with pytest.raises(ValueError, match="sasr_init"):
        build_model(_cfg("sasrnet", sasr_init="ones"))


def test_cell_grouping_groups_grid_cells_and_reuses_the_partners_groups_for_negatives():
    """visual_group="cells": the visual source tokens group the cells of the time-averaged grid; with
    zero init it still starts as AVST; a negative's groups are its partner's (eval: no noise, so equal)."""
    torch.manual_seed(0)
    cfg = _cfg("sasrnet", visual_group="cells", sasr_init="zero")
    model = build_model(cfg).eval()
    b = _batch()
    out = model(b)
    n_cells = model.visual_proj.pos.shape[0]  # the stem's (strided) grid
    assert out["assign_v"].shape == (B, cfg.n_sources, n_cells) and out["assign_a"].shape == (B, cfg.n_sources, T)
    assert torch.allclose(out["assign_v"].sum(1), torch.ones(B, n_cells))  # each cell to exactly one token
    avst = build_model(_cfg("avst")).eval()
    avst.load_state_dict(model.state_dict(), strict=False)
    assert torch.allclose(out["logits"], avst(b)["logits"], atol=1e-6)
    with torch.no_grad():  # make the branch matter, then compare negatives by index vs explicit frames
        model.sasr.v_back.attn.out_proj.weight.normal_()
    idx = torch.tensor([1, 2, 3, 0])
    explicit = model({**b, "visual_neg": b["visual"][idx]})
    by_index = model({k: v for k, v in b.items() if k != "visual_neg"} | {"neg_index": idx})
    assert torch.allclose(explicit["match_neg"], by_index["match_neg"], atol=1e-5)
    with pytest.raises(ValueError, match="visual_group"):
        build_model(_cfg("sasrnet", visual_group="frames"))


@pytest.mark.parametrize("kind", ["sasrnet", "avst"])
def test_negatives_by_batch_index_equal_explicit_negative_frames(kind):
    """neg_index reuses the partner's stem output (SaSR-Net: also its V''): same loss and gradients as
    stacking its frames. SaSR-Net is compared without Gumbel noise (eval mode; gradients still flow), since
    a recomputed V'' draws its own noise where the reused one has the partner's."""
    cfg = _cfg(kind)
    torch.manual_seed(0)
    model = build_model(cfg).train(kind != "sasrnet")
    b = _batch()
    idx = torch.tensor([1, 2, 2, 0])  # item 2's partner is itself: the loss masks that pair
    explicit = {**b, "visual_neg": b["visual"][idx], "neg_valid": torch.tensor([True, True, False, True])}
    by_index = {k: v for k, v in explicit.items() if k != "visual_neg"} | {"neg_index": idx}
    losses, grads = [], []
    for batch in (explicit, by_index):
        model.zero_grad()
        torch.manual_seed(1)  # dropout / drop-path draw the same masks
        loss = compute_loss(cfg, model(batch), batch)
        loss["loss"].backward()
        losses.append(loss["match"].detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.parametrize("kind", ["sasrnet", "avst", "blind"])
def test_questions_about_one_video_share_its_computation(kind):
    """collate stacks each distinct video once (video_index maps questions to rows); the model's outputs,
    losses and gradients equal those of the batch with every question carrying its own copy."""
    from sasrnet.data import collate

    cfg = _cfg(kind)
    g = torch.Generator().manual_seed(3)
    vids = ["v0", "v1", "v0", "v2", "v1", "v0"]
    feats = {v: (torch.randn(T, 128, generator=g), torch.randn(T, C, H, W, generator=g)) for v in set(vids)}
    items = [{"audio": feats[v][0], "visual": feats[v][1], "question": torch.randint(1, V, (14,), generator=g),
              "answer": torch.tensor(i % A), "sources": (torch.rand(22, generator=g) > 0.7).float(), "video_id": v,
              "question_id": i, "type_key": "A-Count"} for i, v in enumerate(vids)]
    seeds = [100 + int(v[1]) for v in vids]  # per video, as train() draws them
    neg = [1, 0, 3, 2, 5, 4]
    shared = collate(items, None, seeds, neg_index=neg)
    assert shared["audio"].shape[0] == 3 and shared["video_index"].tolist() == [0, 1, 0, 2, 1, 0]
    copied = {k: v for k, v in shared.items() if k != "video_index"}
    copied["audio"] = torch.stack([it["audio"] for it in items])
    copied["visual"] = torch.stack([it["visual"] for it in items])
    copied["noise_seed"] = torch.tensor(seeds)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    res = []
    for batch in (shared, copied):
        model.zero_grad()
        out = model(batch)
        loss = compute_loss(cfg, out, batch)
        loss["loss"].backward()
        res.append((out["logits"].detach(), loss["loss"].detach(),
                    torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    assert torch.allclose(res[0][0], res[1][0], atol=1e-5)
    assert torch.allclose(res[0][1], res[1][1], atol=1e-6)
    assert torch.allclose(res[0][2], res[1][2], atol=1e-5)


@pytest.mark.parametrize("kind", ["sasrnet", "avst"])
def test_match_head_runs_once_per_video_and_once_per_distinct_negative_pair(kind):
    """6 questions about 3 videos whose negatives form 4 distinct (audio video, frame video) pairs: the
    match head scores 3 positive rows and 4 negative rows, and the per-question logits are gathered back."""
    from sasrnet.data import collate

    g = torch.Generator().manual_seed(4)
    vids = ["v0", "v1", "v0", "v2", "v1", "v0"]
    feats = {v: (torch.randn(T, 128, generator=g), torch.randn(T, C, H, W, generator=g)) for v in sorted(set(vids))}
    items = [{"audio": feats[v][0], "visual": feats[v][1], "question": torch.randint(1, V, (14,), generator=g),
              "answer": torch.tensor(0), "sources": torch.zeros(22), "video_id": v, "question_id": i,
              "type_key": "A-Count"} for i, v in enumerate(vids)]
    # partners: v0->v1 (questions 0, 5), v1->v0 (1, 4), v0->v2 (2), v2->v0 (3)
    batch = collate(items, None, [0] * len(items), neg_index=[1, 0, 3, 2, 5, 4])
    model = build_model(_cfg(kind)).eval()
    seen: list[int] = []
    model.match.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    out = model(batch)
    assert seen == [4, 3]  # negatives (distinct pairs), then positives (distinct videos)
    assert out["match_neg"].shape[0] == out["match_pos"].shape[0] == len(items)
    assert torch.equal(out["match_neg"][0], out["match_neg"][5]) and torch.equal(out["match_neg"][1], out["match_neg"][4])
    assert not torch.equal(out["match_neg"][0], out["match_neg"][2])
