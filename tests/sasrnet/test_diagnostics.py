"""Training diagnostics, the ablation switches (gate, negatives, no match loss), the Gumbel noise and the
identity-statistics shortcut."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sasrnet.data import collate, data_paths, feature_dataset, load_questions, negative_frames
from sasrnet.diagnostics import diagnostics, entropy_ratio, module_grad_norms
from sasrnet.model import build_model, compute_loss
from sasrnet.recipes.train import train
from sasrnet.sasr import gumbel_noise
from sasrnet_testdata import tiny_config
from test_model import _batch, _cfg


def test_gumbel_noise_is_a_function_of_each_samples_seed_alone():
    like = torch.zeros(())
    seeds = torch.tensor([3, 10**12 + 7, 2**40 + 5, 0])
    shape = torch.Size([4, 22, 10])
    noise = gumbel_noise(shape, seeds, like)
    assert torch.equal(noise[1:3], gumbel_noise(torch.Size([2, 22, 10]), seeds[1:3], like))  # batch split
    assert torch.equal(noise[:1], gumbel_noise(torch.Size([1, 22, 10]), torch.tensor([3]), like))
    assert not torch.equal(noise[0], noise[3])
    big = gumbel_noise(torch.Size([64, 100, 100]), torch.arange(64) * 1_000_003 + 11, like).double()
    assert big.mean().item() == pytest.approx(0.5772, abs=0.01)  # Euler–Mascheroni
    assert big.var().item() == pytest.approx(math.pi**2 / 6, rel=0.02)
    # neighbouring seeds and elements are not correlated
    flat = big.view(64, -1)
    assert abs(np.corrcoef(flat[0].numpy(), flat[1].numpy())[0, 1]) < 0.02
    assert abs(np.corrcoef(flat[0, :-1].numpy(), flat[0, 1:].numpy())[0, 1]) < 0.02
    # bf16 batches (autocast) get finite noise: u is drawn in float32, where it never rounds up to 1
    bf = gumbel_noise(torch.Size([64, 100, 100]), torch.arange(64) * 1_000_003 + 11, torch.zeros((), dtype=torch.bfloat16))
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf).all()


def test_zero_initialised_gate_starts_sasrnet_as_avst():
    torch.manual_seed(0)
    model = build_model(_cfg("sasrnet", sasr_gate=True)).eval()
    a, v = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    s = model.sasr(a, v)
    assert torch.equal(s["a"], a) and torch.equal(s["v"], v)
    with torch.no_grad():
        model.sasr.gate_a.fill_(0.5)
    assert not torch.allclose(model.sasr(a, v)["a"], a)
    # the gate trains: the answer loss reaches it
    model.train()
    out = model(_batch())
    compute_loss(model.cfg, out, _batch())["loss"].backward()
    assert model.sasr.gate_a.grad is not None and model.sasr.gate_a.grad.abs() > 0
    assert "sasr.gate_a" not in dict(build_model(_cfg("sasrnet")).named_parameters())  # published: no gate


def test_identity_statistics_skip_standardisation_and_give_equal_outputs():
    torch.manual_seed(0)
    model = build_model(_cfg("avst")).eval()
    assert model._standardize is False
    batch = _batch()
    plain = model(batch)["logits"]
    model.set_input_stats(torch.zeros(128), torch.ones(128), torch.zeros(6), torch.ones(6))
    assert model._standardize is False
    model.set_input_stats(torch.full((128,), 0.5), torch.ones(128) * 2, torch.zeros(6), torch.ones(6))
    assert model._standardize is True
    shifted = model(batch)["logits"]
    assert not torch.allclose(plain, shifted)
    other = build_model(_cfg("avst")).eval()
    other.load_state_dict(model.state_dict())  # loading the statistics turns standardisation on
    assert other._standardize is True and torch.equal(other(batch)["logits"], shifted)
    manual = {**batch, "audio": (batch["audio"] - 0.5) / 2}
    model.set_input_stats(torch.zeros(128), torch.ones(128), torch.zeros(6), torch.ones(6))
    assert torch.equal(model(manual)["logits"], shifted)


def test_coherent_negatives_are_one_other_clip_in_order(avqa_dir):
    paths = data_paths(avqa_dir)
    qs = load_questions(paths.train_ann)
    from sasrnet.data import build_vocabs

    qv, av = build_vocabs(qs)
    ds = feature_dataset(qs, paths.features, qv, av, n_segments=6, max_question_len=14, skip_bad=False,
                         multiple_choice=False, cache=True)
    videos = sorted({q.video_id for q in qs})
    neg = negative_frames(ds, videos[:3], videos, [1, 2, 3], "coherent").numpy()
    clips = {v: ds.video_features(v)[1] for v in videos}
    for row, key in zip(neg, videos[:3], strict=True):
        match = [v for v, c in clips.items() if np.array_equal(row, c)]
        assert len(match) == 1 and match[0] != key
    shuffled = negative_frames(ds, videos[:3], videos, [1, 2, 3], "shuffled").numpy()
    assert not any(np.array_equal(shuffled[0], c) for c in clips.values())
    with pytest.raises(Exception, match="unknown negatives"):
        negative_frames(ds, videos[:1], videos, [1], "random")


def test_entropy_ratio_and_grad_norms_move():
    assert entropy_ratio(torch.full((3, 10), 0.1)) == pytest.approx(1.0)
    assert entropy_ratio(torch.eye(10)) == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    model = build_model(_cfg("sasrnet")).train()
    batch = _batch()
    compute_loss(model.cfg, model(batch), batch)["loss"].backward()
    norms = module_grad_norms(model)
    assert {"question", "audio", "visual_proj", "sasr.audio", "sasr.visual", "answer"} <= set(norms)
    assert all(v >= 0 for v in norms.values()) and norms["answer"] > 0


def test_diagnostics_differ_between_models_and_leave_the_model_as_it_was():
    batch = collate([{"audio": torch.randn(5, 128), "visual": torch.randn(5, 6, 3, 3),
                      "question": torch.randint(1, 30, (14,)), "answer": torch.tensor(i % 3),
                      "sources": torch.zeros(22), "video_id": f"v{i // 2}", "type_key": "A-Count"}
                     for i in range(8)])
    results = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(_cfg("sasrnet")).train()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        d = diagnostics(model, batch)
        assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert 0 <= d["temporal_entropy_v"] <= 1 and 0 <= d["spatial_entropy"] <= 1
        assert 0 <= d["match_acc_pos"] <= 1 and d["grad_norm_visual_input"] > 0
        results.append(d)
    assert results[0] != results[1]
    assert diagnostics(build_model(_cfg("blind")), batch) == {}


def test_training_logs_terms_grad_norms_and_diagnostics_each_epoch(avqa_dir, tmp_path):
    m = train(tiny_config(model="sasrnet", epochs=1, diagnostics_questions=16), avqa_dir, tmp_path / "s")
    rec = m["history"][0]
    assert {"answer", "match", "source", "cls", "loss"} <= set(rec["terms"])
    assert rec["grad_norms"]["sasr.audio"] > 0 and "temporal_entropy_v" in rec["diagnostics"]
    logged = [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert any("diagnostics" in r for r in logged)
    # no match loss: no term, no negatives built; coherent negatives and the gate train end to end
    m = train(tiny_config(model="sasrnet", epochs=1, arch={"w_match": 0.0}), avqa_dir, tmp_path / "nm")
    assert "match" not in m["history"][0]["terms"]
    m = train(tiny_config(model="sasrnet", epochs=1, negatives="coherent", arch={"sasr_gate": True}), avqa_dir,
              tmp_path / "coh")
    assert "match" in m["history"][0]["terms"] and "gate_a" in m["history"][0]["diagnostics"]
