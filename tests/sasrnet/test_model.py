"""SaSR-Net / AVST / question-only model: shapes, losses, grouping, configs."""

from __future__ import annotations

import pytest
import torch
from mmcore.errors import ConfigError
from sasrnet.config import PRESETS, ModelConfig, model_config
from sasrnet.model import build_model, compute_loss
from sasrnet.sasr import SaSRModule, assign

B, T, C, H, W, V, A = 4, 5, 6, 3, 3, 30, 12


def _batch(multiple_choice: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    b = {
        "audio": torch.randn(B, T, 128, generator=g),
        "visual": torch.randn(B, T, C, H, W, generator=g),
        "visual_neg": torch.randn(B, T, C, H, W, generator=g),
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
                                           "n_answers": A, "n_segments": T, **kw})


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


def test_hard_gumbel_assignment_is_straight_through_seeded_and_fresh_per_seed():
    logits = torch.randn(3, 22, 7, requires_grad=True)
    a = assign(logits, hard=True, training=True, seeds=torch.tensor([1, 2, 3]))
    assert torch.allclose(a.sum(1), torch.ones(3, 7))
    (a * torch.randn_like(a)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # the gradient flows through the softmax
    again = assign(logits.detach(), hard=True, training=True, seeds=torch.tensor([1, 2, 3]))
    assert torch.equal(a.detach(), again)
    other = assign(logits.detach(), hard=True, training=True, seeds=torch.tensor([4, 5, 6]))
    assert not torch.equal(a.detach(), other)  # a new seed (every step has one) draws new noise
    eval_a = assign(logits.detach(), hard=True, training=False)
    assert torch.equal(eval_a.argmax(1), logits.detach().argmax(1))
    soft = assign(logits.detach(), hard=False, training=True)
    assert torch.allclose(soft, logits.detach().softmax(1))


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


def test_published_negatives_rerun_the_sasr_module_on_the_other_frames():
    """negative_pass="full" (the public code): the audio branch regroups by the NEGATIVE frames, so the
    negatives' match logits differ from "reuse_audio" (positive A'' kept); the positive outputs do not.
    The audio output itself depends on the frames."""
    torch.manual_seed(0)
    full = build_model(_cfg("sasrnet")).eval()
    reuse = build_model(_cfg("sasrnet", negative_pass="reuse_audio")).eval()
    reuse.load_state_dict(full.state_dict())
    b = _batch()
    of, orr = full(b), reuse(b)
    assert torch.equal(of["logits"], orr["logits"]) and torch.equal(of["match_pos"], orr["match_pos"])
    assert not torch.allclose(of["match_neg"], orr["match_neg"], atol=1e-4)
    a = torch.randn(B, T, 32)
    v1, v2 = torch.randn(B, T, 32), torch.randn(B, T, 32)
    out1, out2 = full.sasr(a, v1), full.sasr(a, v2)
    assert (out1["a"] - out2["a"]).norm() / out1["a"].norm() > 0.01
    with pytest.raises(ValueError, match="negative_pass"):
        build_model(_cfg("sasrnet", negative_pass="none"))


def test_sasr_init_is_the_public_truncated_normal():
    torch.manual_seed(0)
    sasr = build_model(model_config("sasrnet", "paper", {"word_vocab": V, "n_answers": A})).sasr
    w = torch.cat([m.weight.detach().flatten() for m in sasr.modules() if isinstance(m, torch.nn.Linear)])
    # std 0.02, cut at +-2 (absolute, as timm's trunc_normal_: a sample of the uniform's end point lands on 2)
    assert abs(float(w.std()) - 0.02) < 0.001 and float((w.abs() > 0.12).float().mean()) < 1e-6
    assert all(float(m.bias.detach().abs().max()) == 0 for m in sasr.modules() if isinstance(m, torch.nn.Linear))
    assert torch.equal(sasr.tokens, torch.zeros_like(sasr.tokens))
    # drop-path 0.1 on every transformer block and back-projection (not a rising schedule), none before assignment
    from sasrnet.sasr import CrossAttnBlock, DropPath, GroupingBlock, SelfAttnBlock

    rates = {type(m).__name__: {blk.drop_path.p for blk in sasr.modules() if isinstance(blk, type(m))}
             for m in sasr.modules() if isinstance(m, SelfAttnBlock | CrossAttnBlock)}
    assert rates["SelfAttnBlock"] == {0.1}
    grouping = [m for m in sasr.modules() if isinstance(m, GroupingBlock)]
    assert {g.pre_assign.drop_path.p for g in grouping} == {0.0}
    assert {sasr.audio.back.drop_path.p, sasr.visual.back.drop_path.p} == {0.1}
    assert all(isinstance(m.drop_path, DropPath) for m in sasr.modules() if isinstance(m, SelfAttnBlock))


@pytest.mark.parametrize("kind", ["sasrnet", "avst", "blind"])
def test_questions_about_one_video_share_its_computation(kind):
    """collate stacks each distinct video once (video_index maps questions to rows); the model's outputs,
    losses and gradients equal those of the batch with every question carrying its own copy."""
    from sasrnet.data import collate

    cfg = _cfg(kind)
    g = torch.Generator().manual_seed(3)
    vids = ["v0", "v1", "v0", "v2", "v1", "v0"]
    feats = {v: (torch.randn(T, 128, generator=g), torch.randn(T, C, H, W, generator=g),
                 torch.randn(T, C, H, W, generator=g)) for v in sorted(set(vids))}
    items = [{"audio": feats[v][0], "visual": feats[v][1], "question": torch.randint(1, V, (14,), generator=g),
              "answer": torch.tensor(i % A), "sources": (torch.rand(22, generator=g) > 0.7).float(), "video_id": v,
              "question_id": i, "type_key": "A-Count"} for i, v in enumerate(vids)]
    seeds = [100 + int(v[1]) for v in vids]  # per video, as train() draws them
    rows = ["v0", "v1", "v2"]
    shared = collate(items, seeds, torch.stack([feats[v][2] for v in rows]))
    assert shared["audio"].shape[0] == 3 and shared["video_index"].tolist() == [0, 1, 0, 2, 1, 0]
    copied = {k: v for k, v in shared.items() if k != "video_index"}
    copied["audio"] = torch.stack([it["audio"] for it in items])
    copied["visual"] = torch.stack([it["visual"] for it in items])
    copied["visual_neg"] = torch.stack([feats[v][2] for v in vids])
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


def test_negative_frames_come_from_other_videos_and_depend_only_on_the_seed():
    import numpy as np
    from sasrnet.data import negative_frames

    class Videos:  # each video's frame t is filled with 100 * video + t
        def video_features(self, key):
            k = int(key[1:])
            return np.zeros((T, 1)), np.stack([np.full((C, H, W), 100.0 * k + t, dtype=np.float32) for t in range(T)])

    videos = [f"v{i}" for i in range(6)]
    neg = negative_frames(Videos(), ["v0", "v3"], videos, [11, 12])
    assert neg.shape == (2, T, C, H, W)
    src = neg[:, :, 0, 0, 0].numpy()
    assert (src[0] // 100 != 0).all() and (src[1] // 100 != 3).all()  # never the video's own frames
    assert len({int(x) // 100 for x in src.flatten()}) > 2  # each segment draws its own video
    again = negative_frames(Videos(), ["v3"], videos, [12])
    assert torch.equal(again[0], neg[1])  # a row's draw depends on its seed only, not on its batch-mates
    assert not torch.equal(negative_frames(Videos(), ["v3"], videos, [13])[0], neg[1])
