"""MultiDelete as published (CLU-UML/MultiDelete, vl_unlearn/task_unlearn.py): its three MSE terms on tiny
hand-computed batches, the per-step text permutation, the method's loss assembly and its towers setting."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from cliperase import losses
from cliperase.config import UnlearnConfig
from cliperase.methods import Feats, method_loss

EYE = torch.eye(2)
SWAP = torch.tensor([1, 0])


def test_decouple_hand_value_on_2x2():
    # new model = original; the original's texts swapped: S' = I, S = [[0, 1], [1, 0]];
    # MSE(S, S') = 1 for i2t and again for t2i
    assert losses.decouple_loss(EYE, EYE, EYE, EYE[SWAP]).item() == pytest.approx(2.0)
    # features are L2-normalised first: scaled features give the same value
    assert losses.decouple_loss(3 * EYE, 0.5 * EYE, 2 * EYE, EYE[SWAP]).item() == pytest.approx(2.0)
    # an identity permutation asks for nothing: zero when the unlearned model equals the original
    assert losses.decouple_loss(EYE, EYE, EYE, EYE).item() == pytest.approx(0.0)


def test_decouple_compares_full_matrices_not_only_the_diagonal():
    # a model whose matched pairs already equal the target diagonal but whose off-diagonal entries do not
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # S' = [[0, 0], [1, 1]] (diagonal 0, 1)
    orig_txt_perm = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # S = [[0, 1], [1, 0]] (diagonal 0, 0)
    # squared errors: (0-0)^2 + (0-1)^2 + (1-1)^2 + (1-0)^2 = 2 over 4 entries, twice
    assert losses.decouple_loss(img, txt, EYE, orig_txt_perm).item() == pytest.approx(1.0)


def test_decouple_differs_for_a_different_model():
    torch.manual_seed(0)
    img, txt = torch.randn(4, 5), torch.randn(4, 5)
    perm = torch.tensor([2, 0, 3, 1])
    a = losses.decouple_loss(img, txt, img, txt[perm])
    b = losses.decouple_loss(img + torch.randn_like(img), txt, img, txt[perm])
    assert a.item() > 0 and b.item() > 0 and abs(a.item() - b.item()) > 1e-3


def test_decouple_gradient_reaches_only_the_unlearned_model():
    img_n = torch.randn(3, 4, requires_grad=True)
    img_o = torch.randn(3, 4, requires_grad=True)
    txt = torch.randn(3, 4)
    losses.decouple_loss(img_n, txt, img_o, txt.flip(0)).backward()
    assert img_o.grad is None and img_n.grad is not None and img_n.grad.abs().sum() > 0


def test_multimodal_retention_hand_value_and_zero_for_the_original():
    # fused new (I + T) / 2 = I; fused original (I + swapped I) / 2 = all 0.5: MSE = 0.25
    assert losses.multimodal_retention_loss(EYE, EYE, EYE, EYE[SWAP]).item() == pytest.approx(0.25)
    torch.manual_seed(1)
    img, txt = torch.randn(3, 4), torch.randn(3, 4)
    assert losses.multimodal_retention_loss(img, txt, img, txt).item() == pytest.approx(0.0)
    assert losses.multimodal_retention_loss(img + 1, txt, img, txt).item() > 1e-3


def test_unimodal_retention_hand_value_image_and_text():
    img_o = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # image row 0 differs by (1, -1): MSE 2 / 4
    txt_o = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])  # text row 0 differs by (2, 0): MSE 4 / 4
    assert losses.unimodal_retention_loss(EYE, EYE, img_o, txt_o).item() == pytest.approx(1.5)
    assert losses.unimodal_retention_loss(EYE, EYE, img_o, txt_o, "image").item() == pytest.approx(0.5)
    assert losses.unimodal_retention_loss(EYE, EYE, EYE, EYE).item() == pytest.approx(0.0)
    with pytest.raises(ValueError):
        losses.unimodal_retention_loss(EYE, EYE, EYE, EYE, "text")


def test_multidelete_losses_places_each_term_on_its_data():
    torch.manual_seed(2)
    f_i, f_t, r_i, r_t = (torch.randn(4, 3) for _ in range(4))
    perm = torch.tensor([1, 2, 3, 0])
    same = losses.multidelete_losses(f_i, f_t, r_i, r_t, f_i, f_t, r_i, r_t, perm)
    assert same["multimodal"].item() == pytest.approx(0.0) and same["unimodal"].item() == pytest.approx(0.0)
    assert same["decouple"].item() == pytest.approx(losses.decouple_loss(f_i, f_t, f_i, f_t[perm]).item())
    assert same["decouple"].item() > 0  # the copy still has to decouple
    # unimodal is on D_f: moving retain features leaves it alone and moves the multimodal term
    moved_r = losses.multidelete_losses(f_i, f_t, r_i + 1, r_t, f_i, f_t, r_i, r_t, perm)
    assert moved_r["unimodal"].item() == pytest.approx(0.0) and moved_r["multimodal"].item() > 1e-3
    moved_f = losses.multidelete_losses(f_i + 1, f_t, r_i, r_t, f_i, f_t, r_i, r_t, perm)
    assert moved_f["unimodal"].item() > 1e-3 and moved_f["multimodal"].item() == pytest.approx(0.0)


def test_decouple_permutation_depends_only_on_seed_and_step():
    p = losses.decouple_permutation(8, 0, 3)
    assert torch.equal(p, losses.decouple_permutation(8, 0, 3))
    assert sorted(p.tolist()) == list(range(8))
    others = [losses.decouple_permutation(8, s, t) for s, t in ((0, 4), (1, 3), (0, 5))]
    assert any(not torch.equal(p, o) for o in others)


def test_method_loss_is_the_unweighted_sum_with_the_step_permutation():
    torch.manual_seed(3)
    cfg = UnlearnConfig(method="multidelete", seed=7)
    mk = lambda: Feats(torch.randn(6, 3), torch.randn(6, 3), [f"t{i}" for i in range(6)])  # noqa: E731
    f, r, of, orr = mk(), mk(), mk(), mk()
    total, parts = method_loss(cfg, torch.tensor(10.0), f, r, of, orr, torch.tensor(10.0), step=5)
    assert set(parts) == {"decouple", "multimodal", "unimodal"}
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-6)
    perm = losses.decouple_permutation(6, 7, 5)
    assert parts["decouple"] == pytest.approx(losses.decouple_loss(f.img, f.txt, of.img, of.txt[perm]).item(), rel=1e-6)
    want_uni = F.mse_loss(F.normalize(f.img, dim=-1), F.normalize(of.img, dim=-1))
    _, img_only = method_loss(dataclasses.replace(cfg, multidelete_unimodal="image"), torch.tensor(10.0), f, r, of, orr,
                              torch.tensor(10.0), step=5)
    assert img_only["unimodal"] == pytest.approx(want_uni.item(), rel=1e-6)
    assert img_only["unimodal"] < parts["unimodal"]


def test_towers_auto_gives_multidelete_its_published_setting():
    from cliperase.methods import get_method

    def towers(**kw):
        cfg = UnlearnConfig(**kw)
        return get_method(cfg.method).towers_for(cfg)

    assert towers(method="multidelete") == "both"
    assert towers(method="cliperase") == "text"
    assert towers(method="multidelete", towers="text") == "text"
    with pytest.raises(Exception, match="multidelete_unimodal"):
        UnlearnConfig(method="multidelete", multidelete_unimodal="text", forget=UnlearnConfig().forget.__class__(
            classes=["circle"])).validate()


def test_multidelete_run_trains_the_image_tower_and_its_image_term():
    from cliperase.forget_sets import split_forget_retain
    from cliperase.methods import unlearn
    from cliperase.recipes.runner import load_data
    from cliperase_testutil import tiny_config
    from mmcore.distributed import AcceleratorConfig, build_accelerator
    from mmcore.encoders.clip import create_clip

    cfg = tiny_config(method="multidelete", steps=2, checkpoint_every=0, log_every=1, lr=1e-3)
    acc = build_accelerator(AcceleratorConfig(cpu=True, log_with="none"))
    torch.manual_seed(0)
    bundle = create_clip("mm-micro-clip")
    train, test = load_data(cfg, bundle.image_size)
    split = split_forget_retain(train, test, cfg.forget)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    res = unlearn(bundle, split, cfg, acc)
    after = res.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    # step 2 (after one update of both towers): the image half of the unimodal term is no longer zero
    cfg_img = dataclasses.replace(cfg, multidelete_unimodal="image")
    torch.manual_seed(0)
    bundle = create_clip("mm-micro-clip")
    assert unlearn(bundle, split, cfg_img, acc).last_log["unimodal"] > 0
