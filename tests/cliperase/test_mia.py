"""The membership-inference attack (cliperase.mia): features, the logistic-regression attack, held-out accuracy,
efficacy and the "uninformative" flag, on synthetic class distributions of two kinds of model."""

import math

import numpy as np
import pytest
from cliperase.mia import LogisticAttack, membership_inference, sample_features


def test_sample_features_hand_values():
    logits = np.array([[math.log(3.0), 0.0], [0.0, 0.0]])
    f = sample_features(logits, np.array([0, 1]))
    # row 0: p = (0.75, 0.25); row 1: uniform
    ent0 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert f[0] == pytest.approx([-math.log(0.75), 0.75, ent0])
    assert f[1] == pytest.approx([math.log(2.0), 0.5, math.log(2.0)])
    # shift invariance of the softmax, and large logits do not overflow
    assert sample_features(logits + 1000.0, np.array([0, 1])) == pytest.approx(f)


def test_logistic_attack_separates_a_separable_set_and_scores_chance_otherwise():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(2.0, 0.5, (50, 3)), rng.normal(-2.0, 0.5, (50, 3))
    attack = LogisticAttack().fit(members, nonmembers)
    assert attack.predict_member(members).all() and not attack.predict_member(nonmembers).any()
    assert attack.coef is not None and (attack.coef[:3] > 0).all()
    p = attack.member_probability(np.zeros((1, 3)))
    assert 0.2 < float(p[0]) < 0.8  # the midpoint is near the boundary
    with pytest.raises(RuntimeError):
        LogisticAttack().predict_member(members)


def _model_logits(rng, n, classes, peak):
    """Synthetic zero-shot logits of n samples: the true class gets ``peak`` more (sampled) than the rest."""
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0.0, 1.0, (n, classes))
    logits[np.arange(n), labels] += rng.normal(peak, 0.5, n)
    return logits, labels


def _attack(member_peak, nonmember_peak, forget_peak, seed=0):
    rng = np.random.default_rng(seed)
    feats = {k: sample_features(*_model_logits(rng, 200, 10, p))
             for k, p in (("retain", member_peak), ("test", nonmember_peak), ("forget", forget_peak))}
    return membership_inference(feats["retain"], feats["test"], feats["forget"], seed=seed)


def test_attack_on_a_memorising_model_vs_one_that_generalises():
    # memorised: training samples (retain) far more confident than held-out ones; D_f still looks memorised
    memorised = _attack(member_peak=8.0, nonmember_peak=1.0, forget_peak=8.0)
    # generalises: members and non-members alike, so membership cannot be told
    generalises = _attack(member_peak=3.0, nonmember_peak=3.0, forget_peak=3.0)
    assert memorised["attack_balanced_accuracy"] > 90 and memorised["informative"] is True
    assert memorised["efficacy"] < 10  # D_f called member: not forgotten
    assert generalises["attack_balanced_accuracy"] < 55 and generalises["informative"] is False
    assert abs(generalises["efficacy"] - memorised["efficacy"]) > 20
    # the same memorising model after unlearning D_f: D_f now looks like held-out data
    unlearned = _attack(member_peak=8.0, nonmember_peak=1.0, forget_peak=1.0)
    assert unlearned["informative"] is True and unlearned["efficacy"] > 90
    assert unlearned["attack_balanced_accuracy"] == pytest.approx(memorised["attack_balanced_accuracy"], abs=5)


def test_held_out_split_and_sizes():
    rng = np.random.default_rng(1)
    m, n, t = rng.normal(1, 1, (30, 3)), rng.normal(0, 1, (50, 3)), rng.normal(0, 1, (7, 3))
    r = membership_inference(m, n, t, seed=3)
    assert r["n_attack_train"] == 30 and r["n_attack_holdout"] == 30 and r["n_target"] == 7
    assert r == membership_inference(m, n, t, seed=3)  # seeded
    assert membership_inference(m[:3], n[:3], t)["informative"] is False  # too few to hold any out
    assert membership_inference(m[:3], n[:3], t)["efficacy"] is None
    one_d = membership_inference(m[:, 0], n[:, 0], t[:, 0])  # a single feature (pair cosine) works too
    assert one_d["n_attack_holdout"] == 30 and 0 <= one_d["efficacy"] <= 100
