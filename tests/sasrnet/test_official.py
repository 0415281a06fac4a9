"""Checkpoints of the authors' public SaSR-Net code: the key mapping (always), and equality with the public
code itself (only where MM_SASRNET_PUBLIC_DIR points to a checkout of it, with timm and einops importable;
the suite never contains that code): the eval-mode outputs, and one training step (loss, its terms, every
gradient, the parameters after the published optimiser's step)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from mmcore.errors import DataError
from public_code import (
    GumbelTape,
    assert_training_step_bounds,
    import_public,
    no_dropout,
    one_public_and_one_own_step,
    public_losses_at,
    recipe,
    training_step_report,
)
from sasrnet.model import count_parameters
from sasrnet.official import UNUSED_PREFIXES, load_official, official_key, official_outputs

SHAPES = json.loads((Path(__file__).parent / "data/public_sasr_net_state_dict_shapes.json").read_text())["state_dict"]


def _public_layout_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 if shape else torch.tensor(3) for k, shape in SHAPES.items()}


def test_every_public_tensor_maps_to_ours_with_its_shape_and_every_parameter_is_loaded():
    sd = _public_layout_state_dict()
    model = load_official(sd)
    own = model.state_dict()
    loaded = 0
    for k, v in sd.items():
        ours = official_key(k)
        if ours is None:
            assert k.startswith(UNUSED_PREFIXES)
            continue
        assert torch.equal(own[ours], v), k
        loaded += 1
    params = {n for n, _ in model.named_parameters()}
    assert loaded == len(params)  # one public tensor per parameter of ours, nothing left at its init
    assert not model.training


def test_parameter_count_is_the_public_modules_less_its_unused_presence_head():
    model = load_official(_public_layout_state_dict())
    public_sasr = sum(torch.Size(s).numel() for k, s in SHAPES.items() if k.startswith("sasr."))
    assert public_sasr == 45_506_895
    unused = sum(torch.Size(s).numel() for k, s in SHAPES.items() if k.startswith("sasr.fc_prob."))
    assert count_parameters(model.sasr) == public_sasr - unused == 45_506_382


def test_module_prefix_and_saved_checkpoints_load(tmp_path):
    sd = _public_layout_state_dict(1)
    a = load_official({f"module.{k}": v for k, v in sd.items()})
    path = tmp_path / "sasr_net.pt"
    torch.save(sd, path)
    b = load_official(path)  # read with weights_only=True
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_unknown_missing_and_misshaped_keys_are_named():
    sd = _public_layout_state_dict()
    with pytest.raises(DataError, match=r"missing key.*sasr\.audio\.regroup\.q\.weight"):
        load_official({k: v for k, v in sd.items() if k != "sasr.audio_cug.han_encoder.assign.q_proj.weight"})
    with pytest.raises(DataError, match=r"unknown key.*extra_head\.weight"):
        load_official({**sd, "extra_head.weight": torch.zeros(2)})
    bad = dict(sd)
    bad["fc_gl.weight"] = torch.zeros(512, 10)
    with pytest.raises(DataError, match=r"wrong shape.*fc_gl\.weight"):
        load_official(bad)
    with pytest.raises(DataError, match="not a SaSR_Net state dict"):
        load_official({"weight": torch.zeros(1)})


PUBLIC = os.environ.get("MM_SASRNET_PUBLIC_DIR")


def _public_modules():
    """The public ``models`` (SaSR_Net) and ``loss`` (the training losses) modules of the checkout."""
    pytest.importorskip("timm")
    pytest.importorskip("einops")
    root = Path(PUBLIC)
    return import_public([root / "sasr_net", root / "sasr_net/modules"], "models", "loss")


@pytest.mark.skipif(not PUBLIC, reason="MM_SASRNET_PUBLIC_DIR (a checkout of the public SaSR-Net code) not set")
@pytest.mark.parametrize("weight_scale", [None, 0.08])
def test_outputs_equal_the_public_code_at_equal_weights(weight_scale):
    """Random weights, eval mode, paper sizes: our qa logits, match logits and presence probabilities equal
    the public SaSR_Net.forward's to 1e-5 (abs) and 1e-4 (relative) at the public init. A larger random
    draw (std 0.08) drives the match logits to ~50, where float32 rounding alone is ~4e-6: there the abs
    bound is 1e-5 per unit of the largest |value|."""
    public, _ = _public_modules()
    torch.manual_seed(0)
    ref = public.SaSR_Net().eval()
    if weight_scale:
        with torch.no_grad():
            for p in ref.parameters():
                if p.dim() > 1:
                    p.normal_(0, weight_scale)
    ours = load_official(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    b, t = 3, 10
    audio = torch.randn(b, t, 128, generator=g)
    vp, vn = (torch.randn(b, t, 512, 14, 14, generator=g).relu() for _ in range(2))
    q = torch.randint(0, 93, (b, 14), generator=g)
    with torch.no_grad():
        qa, m_pos, m_neg, _, v_prob, a_prob, _ = ref(audio, vp, vn, q)
        out = official_outputs(ours, audio, vp, vn, q)
    for name, want in (("qa", qa), ("match_posi", m_pos), ("match_nega", m_neg), ("v_prob", v_prob), ("a_prob", a_prob)):
        got = out[name]
        assert got.shape == want.shape, name
        assert (got - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()) if weight_scale else 1.0), name
        assert (got - want).norm() / want.norm() <= 1e-4, name
    assert torch.equal(out["qa"].argmax(-1), qa.argmax(-1))


def test_grounding_checkpoint_gives_the_shared_tensors_and_init_from_uses_them(tmp_path):
    """ST-AVQA's grounding checkpoint (a match-network state dict): its audio embedding, grounding and
    match-head tensors initialise ours by name; its other layers are dropped; a file with none is an error."""
    from sasrnet.config import model_config
    from sasrnet.model import build_model
    from sasrnet.official import grounding_init_weights
    from sasrnet.recipes.train import _init_from

    g = torch.Generator().manual_seed(0)
    public = {k: torch.randn(SHAPES[k], generator=g) for k in SHAPES
              if k.split(".")[0] in ("fc_a1", "fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4")}
    public["visual_net.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # its own ResNet: not ours
    path = tmp_path / "main_grounding_gen_best.pt"
    torch.save({f"module.{k}": v for k, v in public.items()}, path)
    mapped = grounding_init_weights(path)
    assert set(mapped) == {"audio.fc1.weight", "audio.fc1.bias", "audio.fc2.weight", "audio.fc2.bias", "ground.weight",
                           "ground.bias", *(f"match.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias"))}
    model = build_model(model_config("avst", "paper", {"word_vocab": 93, "n_answers": 42}))
    assert _init_from(model, path) == len(mapped)
    assert torch.equal(model.match[6].weight, public["fc4.weight"]) and torch.equal(model.ground.bias, public["fc_gl.bias"])
    torch.save({"visual_net.conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="no audio-embedding"):
        grounding_init_weights(tmp_path / "other.pt")
    with pytest.raises(DataError, match="not found"):
        _init_from(model, tmp_path / "missing.pt")


@pytest.mark.slow
@pytest.mark.skipif(not PUBLIC, reason="MM_SASRNET_PUBLIC_DIR (a checkout of the public SaSR-Net code) not set")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_training_step_equals_the_public_code(dtype):
    """Train mode, paper sizes, equal weights and inputs, dropout and drop-path off, the public Gumbel
    draws replayed in ours: the loss its main.py computes (qa + 0.5 match + 0.5 presence of both modalities
    + 0.5 token class), each term, every gradient and the parameters after one step of its Adam(lr 1e-4)
    equal ours (the measures: training_step_report). 2 questions: 12-16 s per dtype on one core."""
    import re

    models, loss = _public_modules()
    src = (Path(PUBLIC) / "sasr_net/main.py").read_text()
    assert "loss = loss_qa + 0.5 * loss_match + 0.5 * loss_semantic + 0.5 * loss_cor" in src
    assert "optimizer = optim.Adam(model.parameters(), lr=args.lr)" in src
    lr = float(re.search(r'"--lr", type=float, default=([0-9.e-]+)', src).group(1))
    cfg = recipe("sasrnet-paper")
    assert (cfg.lr, cfg.sasr_lr_scale, cfg.warmup_steps, cfg.grad_clip) == (lr, 1.0, 0, 0.0)

    torch.manual_seed(0)
    ref = no_dropout(models.SaSR_Net()).to(dtype).train()
    ours = no_dropout(load_official(ref.state_dict())).to(dtype).train()
    assert (ours.cfg.w_match, ours.cfg.w_source, ours.cfg.w_cls) == (0.5, 0.5, 0.5)
    g = torch.Generator().manual_seed(1)
    b, t = 2, 10
    audio = torch.randn(b, t, 128, generator=g, dtype=dtype)
    vp, vn = (torch.randn(b, t, 512, 14, 14, generator=g, dtype=dtype).relu() for _ in range(2))
    q = torch.randint(0, 93, (b, 14), generator=g)
    answer = torch.randint(0, 42, (b,), generator=g)
    items = (torch.rand(b, 22, generator=g) < 0.3).to(torch.float64)  # the public loader's float64 multi-hot

    def public_loss(outputs):  # main.py:40-60
        out_qa, m_pos, m_neg, av_cls_prob, v_prob, a_prob, _ = outputs
        with public_losses_at(dtype, loss):
            loss_match = loss.LossAVMatch()(m_pos, m_neg)
            loss_cor = loss.LossCorrelation(num_class=22)(av_cls_prob)
            sem_v, sem_a = loss.LossSemantic()(v_prob, items), loss.LossSemantic()(a_prob, items)
            loss_qa = loss.LossAVQA()(out_qa, answer)
            total = loss_qa + 0.5 * loss_match + 0.5 * (sem_v + sem_a) + 0.5 * loss_cor
        return total, {"loss": total, "answer": loss_qa, "match": loss_match, "source": sem_v + sem_a, "cls": loss_cor}

    batch = {"audio": audio, "visual": vp, "visual_neg": vn, "question": q, "answer": answer, "sources": items}
    with GumbelTape() as tape:
        step = one_public_and_one_own_step(ref, ours, public_loss, (audio, vp, vn, q), batch, cfg, lr, tape=tape)
    assert len(tape.draws) == 4  # visual and audio grouping, of the positive and the negative pass
    assert_training_step_bounds(training_step_report("SaSR-Net", dtype, step, lr), dtype)
