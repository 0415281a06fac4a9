import math

import pytest
import torch
import torch.nn.functional as F
from cliperase import losses
from cliperase.config import UnlearnConfig
from cliperase.methods import Feats, method_loss, needs


def test_forget_loss_known_values():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    # cosine: +1 and -1 → mean 0; dot: 1 and -2 → mean -0.5
    assert losses.forget_loss(img, txt, "cosine").item() == pytest.approx(0.0)
    assert losses.forget_loss(img, txt, "dot").item() == pytest.approx(-0.5)
    # margin 0: only the positive-similarity pair counts
    assert losses.forget_loss(img, txt, "cosine", margin=0.0).item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        losses.forget_loss(img, txt, "euclid")


def test_forget_loss_gradient_reduces_pair_similarity():
    torch.manual_seed(0)
    img = torch.randn(4, 8, requires_grad=True)
    txt = torch.randn(4, 8)
    before = losses.pair_similarity(img, txt).detach()
    losses.forget_loss(img, txt).backward()
    with torch.no_grad():
        after = losses.pair_similarity(img - 0.1 * img.grad, txt)
    assert (after < before).all()


def test_negated_ce_is_minus_clip_ce():
    torch.manual_seed(1)
    img, txt = torch.randn(5, 6), torch.randn(5, 6)
    logits = 10.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    t = torch.arange(5)
    want = -(F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2
    assert losses.negated_ce_forget_loss(img, txt, 10.0).item() == pytest.approx(want.item(), rel=1e-5)


def test_retain_loss_matches_infonce_and_ga_is_its_negation():
    torch.manual_seed(2)
    img, txt = torch.randn(6, 4), torch.randn(6, 4)
    logits = 5.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    t = torch.arange(6)
    want = (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2
    assert losses.retain_loss(img, txt, 5.0).item() == pytest.approx(want.item(), rel=1e-5)
    assert losses.ga_loss(img, txt, 5.0).item() == pytest.approx(-want.item(), rel=1e-5)
    gd = losses.graddiff_loss(img, txt, img, txt, 5.0)
    assert gd.item() == pytest.approx(0.0, abs=1e-5)


def test_consistency_zero_for_identical_models_positive_otherwise():
    torch.manual_seed(3)
    img, txt = torch.randn(5, 4), torch.randn(5, 4)
    assert losses.consistency_loss(img, txt, 10.0, img, txt, 10.0).item() == pytest.approx(0.0, abs=1e-6)
    new_img = img + torch.randn_like(img)
    kl = losses.consistency_loss(new_img, txt, 10.0, img, txt, 10.0)
    # brute-force KL(p_orig || p_new) both directions
    lo = 10.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    ln = 10.0 * F.normalize(new_img, dim=-1) @ F.normalize(txt, dim=-1).T

    def kl_rows(a, b):
        pa = a.softmax(1)
        return (pa * (pa.log() - b.log_softmax(1))).sum(1).mean()

    want = kl_rows(lo, ln) + kl_rows(lo.T, ln.T)
    assert kl.item() == pytest.approx(want.item(), rel=1e-4)
    assert kl.item() > 0


def test_consistency_gradient_does_not_reach_original():
    img_o = torch.randn(3, 4, requires_grad=True)
    img_n = torch.randn(3, 4, requires_grad=True)
    txt = torch.randn(3, 4)
    losses.consistency_loss(img_n, txt, 10.0, img_o, txt, 10.0).backward()
    assert img_o.grad is None and img_n.grad is not None


@pytest.mark.parametrize("method", ["cliperase", "ga", "graddiff", "ft", "multidelete"])
def test_method_loss_parts_and_weights(method):
    torch.manual_seed(5)
    cfg = UnlearnConfig(method=method)
    mk = lambda: Feats(torch.randn(4, 3), torch.randn(4, 3), [f"t{i}" for i in range(4)])  # noqa: E731
    f, r = mk(), mk()
    use = needs(cfg)
    total, parts = method_loss(cfg, torch.tensor(10.0), f if use["forget"] else None, r if use["retain"] else None,
                               f, r, torch.tensor(10.0))
    assert math.isfinite(total.item()) and parts
    if method == "cliperase":
        want = 3 * parts["fm"] + 1 * parts["rm"] + 3 * parts["cm"]
        assert total.item() == pytest.approx(want, rel=1e-5)
        assert parts["cm"] == pytest.approx(0.0, abs=1e-6)  # new == original features


def test_ablation_modules_select_terms():
    cfg = UnlearnConfig(modules="fm")
    assert needs(cfg) == {"forget": True, "retain": False, "frozen": False}
    f = Feats(torch.randn(2, 3), torch.randn(2, 3), ["a", "b"])
    _, parts = method_loss(cfg, torch.tensor(1.0), f, None)
    assert set(parts) == {"fm"}
    cfg = UnlearnConfig(modules="fm+rm", fm_variant="negated_ce")
    _, parts = method_loss(cfg, torch.tensor(1.0), f, f)
    assert set(parts) == {"fm", "rm"} and parts["fm"] < 0
