"""Membership-inference attack of the unlearning literature (SalUn; Jia et al., NeurIPS 2023 "Model sparsity
can simplify machine unlearning"), model-agnostic: it sees only per-sample features.

- Features of each sample from the model's class distribution (:func:`sample_features`): the loss
  (cross-entropy of the true class), the confidence (its probability) and the entropy of the distribution.
- Attack: a class-balanced L2-regularised logistic regression (:class:`LogisticAttack`, numpy, Newton's
  method) on standardised features, trained on members (training data the model saw: D_r) against
  non-members (held-out data), each subsampled to the same size.
- Its own balanced accuracy is measured on a held-out part of those members / non-members; an attack that
  does not beat chance there (below ``min_accuracy``, 55 %) says nothing about D_f and is flagged
  ``informative: False``.
- MIA efficacy: the percentage of the target set (D_f) the attack calls non-member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURES = ("loss", "confidence", "entropy")
MIN_INFORMATIVE_ACCURACY = 55.0  # percent, held-out balanced accuracy of the attack


def sample_features(logits: Any, labels: Any) -> np.ndarray:
    """``[n, 3]`` float64: loss, confidence and entropy of each row's softmax over classes (``logits``
    ``[n, C]``, the model's scaled logits; ``labels`` ``[n]`` true class indices)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    true_logp = logp[np.arange(len(y)), y]
    entropy = -(p * logp).sum(axis=1)
    return np.stack([-true_logp, np.exp(true_logp), entropy], axis=1)


@dataclass
class LogisticAttack:
    """Logistic regression ``P(member | x) = sigmoid(w·(x - mean)/std + b)``, fitted by Newton's method on
    the class-balanced, L2-penalised (``l2`` on ``w``) log-loss. Deterministic: no random initialisation."""

    l2: float = 1e-2
    max_iter: int = 100
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    coef: np.ndarray | None = None  # [d + 1]: w then b

    def fit(self, members: np.ndarray, nonmembers: np.ndarray) -> LogisticAttack:
        x = np.concatenate([members, nonmembers]).astype(np.float64)
        if x.ndim == 1:
            x = x[:, None]
        y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
        weight = np.where(y == 1, 0.5 / max(len(members), 1), 0.5 / max(len(nonmembers), 1))
        self.mean = x.mean(0)
        self.std = np.where(x.std(0) > 1e-12, x.std(0), 1.0)
        xb = self._design(x)
        d = xb.shape[1]
        reg = np.full(d, self.l2)
        reg[-1] = 1e-9  # the bias is not penalised (a tiny ridge keeps the Hessian invertible)
        w = np.zeros(d)
        for _ in range(self.max_iter):
            p = _sigmoid(xb @ w)
            grad = xb.T @ (weight * (p - y)) + reg * w
            hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(reg)
            delta = np.linalg.solve(hess, grad)
            w = w - delta
            if np.abs(delta).max() < 1e-10:
                break
        self.coef = w
        return self

    def _design(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 1:
            x = x[:, None]
        assert self.mean is not None and self.std is not None
        return np.concatenate([(x - self.mean) / self.std, np.ones((len(x), 1))], axis=1)

    def member_probability(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("LogisticAttack.fit first")
        return _sigmoid(self._design(np.asarray(x, dtype=np.float64)) @ self.coef)

    def predict_member(self, x: np.ndarray) -> np.ndarray:
        return self.member_probability(x) >= 0.5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def balanced_accuracy(attack: LogisticAttack, members: np.ndarray, nonmembers: np.ndarray) -> float:
    """Percent: mean of the attack's accuracy on members and on non-members."""
    tpr = float(attack.predict_member(members).mean())
    tnr = float((~attack.predict_member(nonmembers)).mean())
    return 100.0 * (tpr + tnr) / 2


def membership_inference(
    members: np.ndarray,
    nonmembers: np.ndarray,
    targets: np.ndarray,
    seed: int = 0,
    holdout_fraction: float = 0.5,
    min_accuracy: float = MIN_INFORMATIVE_ACCURACY,
    l2: float = 1e-2,
) -> dict[str, Any]:
    """Fit the attack on members vs non-members (equal sizes, seeded subsample), score it on a held-out
    ``holdout_fraction`` of each, and report the efficacy on ``targets`` (percent called non-member).

    Feature arrays are ``[n, d]`` (or ``[n]``). ``informative`` is False when the held-out balanced accuracy
    is below ``min_accuracy`` or there are too few samples to hold any out (fewer than 4 per side)."""
    rng = np.random.default_rng(seed)
    k = min(len(members), len(nonmembers))
    m = members[rng.permutation(len(members))[:k]]
    n = nonmembers[rng.permutation(len(nonmembers))[:k]]
    n_hold = int(round(holdout_fraction * k))
    out: dict[str, Any] = {"n_attack_train": 2 * (k - n_hold), "n_attack_holdout": 2 * n_hold, "n_target": len(targets),
                           "min_informative_accuracy": min_accuracy}
    if k < 4 or n_hold < 2 or k - n_hold < 2:
        return {**out, "efficacy": None, "attack_balanced_accuracy": None, "attack_train_balanced_accuracy": None,
                "informative": False}
    attack = LogisticAttack(l2=l2).fit(m[n_hold:], n[n_hold:])
    acc = balanced_accuracy(attack, m[:n_hold], n[:n_hold])
    efficacy = 100.0 * float((~attack.predict_member(targets)).mean()) if len(targets) else None
    assert attack.coef is not None
    return {
        **out,
        "efficacy": efficacy,
        "attack_balanced_accuracy": acc,
        "attack_train_balanced_accuracy": balanced_accuracy(attack, m[n_hold:], n[n_hold:]),
        "informative": bool(acc >= min_accuracy and efficacy is not None),
        "coef": attack.coef.tolist(),
    }
