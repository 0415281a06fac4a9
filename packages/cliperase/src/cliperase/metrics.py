"""Unlearning metrics. All accuracies and recalls are percentages (0–100).

- Zero-shot accuracy on D_f, D_r and the held-out test data (test-retain: test samples outside the
  forget set, the usual "TA"; test-forget reported too), overall and per class.
- Retrieval Recall@1/5/10 image→text and text→image on forget and retain pairs, each on a seeded
  subsample of at most ``cfg.retrieval_max_pairs`` images (all their captions).
- Membership-inference efficacy on D_f with the community protocol (:mod:`cliperase.mia`; SalUn /
  Jia et al. 2023): per-sample loss, confidence and entropy of the zero-shot class distribution (datasets
  without labels: the cosine similarity of the image and its first caption); a logistic-regression attack
  trained on retain samples (members) vs held-out test-retain samples (non-members), equal sizes
  (≤ ``cfg.mia_max_samples`` each); its balanced accuracy on a held-out half of those; MIA efficacy = percent
  of D_f it calls non-member. Below 55 % held-out accuracy the attack is no better than chance:
  ``mia_informative`` is False and ``mia_efficacy`` is None (the raw number stays in ``mia["efficacy"]``),
  so tables do not print it as a result.
- Relearn time (:func:`relearn_steps`): fine-tuning steps on D_f until its accuracy recovers half of
  the original model's.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import torch
from mmcore.data.records import ImageTextData
from mmcore.eval.retrieval import encode_images, encode_texts, retrieval_eval
from mmcore.eval.zeroshot import zero_shot_eval
from mmcore.optim import adam

from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit
from cliperase.mia import FEATURES, membership_inference, sample_features


def subsample(data: ImageTextData, k: int, seed: int) -> ImageTextData:
    """At most ``k`` records (``k <= 0`` keeps all), a seeded choice kept in the original order."""
    if k <= 0 or len(data) <= k:
        return data
    return data.subset(sorted(random.Random(seed).sample(range(len(data)), k)))


def _labelled(data: ImageTextData) -> bool:
    return bool(data.classnames) and len(data) > 0 and all(r.label is not None for r in data.records)


def _zero_shot(model, bundle, data: ImageTextData, classnames, cfg: UnlearnConfig) -> dict[str, Any] | None:
    if not len(data) or not _labelled(data):
        return None
    return zero_shot_eval(model, bundle.tokenizer, data, bundle.preprocess_eval, classnames=classnames,
                          batch_size=cfg.eval_batch_size, device=_device(model), return_predictions=True)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


def _pair_cosine(model, bundle, data: ImageTextData, cfg: UnlearnConfig) -> np.ndarray:
    img = encode_images(model, data, bundle.preprocess_eval, batch_size=cfg.eval_batch_size, device=_device(model))
    txt = encode_texts(model, bundle.tokenizer, [r.captions[0] for r in data.records],
                       batch_size=cfg.eval_batch_size, device=_device(model))
    return (img * txt).sum(-1).cpu().numpy()


@torch.no_grad()
def evaluate_split(model, bundle, split: ForgetSplit, cfg: UnlearnConfig) -> dict[str, Any]:
    """All metrics of ``model`` on one forget/retain/test split (single process; see module doc)."""
    model.eval()
    seed = cfg.seed
    classnames = split.retain.classnames
    sets = {
        "forget": subsample(split.forget, cfg.eval_max_samples, seed),
        "retain": subsample(split.retain, cfg.eval_max_samples, seed + 1),
        "test": subsample(split.test_retain, cfg.eval_max_samples, seed + 2),
        "test_forget": subsample(split.test_forget, cfg.eval_max_samples, seed + 3),
    }
    out: dict[str, Any] = {}
    zs: dict[str, dict[str, Any] | None] = {k: _zero_shot(model, bundle, d, classnames, cfg) for k, d in sets.items()}
    for k, res in zs.items():
        out[f"{k}_accuracy"] = _pct(res["accuracy"]) if res else None
    out["per_class_accuracy"] = {
        k: {c: 100.0 * a for c, a in res["per_class"].items()} for k, res in zs.items() if res
    }
    out["zero_shot_n"] = {k: (res["n"] if res else 0) for k, res in zs.items()}

    retrieval: dict[str, Any] = {}
    for k, data, s in (("forget", split.forget, seed + 4), ("retain", split.retain, seed + 5)):
        sub = subsample(data, cfg.retrieval_max_pairs, s)
        r = retrieval_eval(model, bundle.tokenizer, sub, bundle.preprocess_eval,
                           batch_size=cfg.eval_batch_size, device=_device(model))
        retrieval[k] = r
        for name, v in r.items():
            if "@" in name:
                out[f"{k}_{name}"] = v
    out["retrieval"] = retrieval

    # Membership inference on D_f: attack trained on retain (members) vs test-retain (non-members).
    mia: dict[str, Any] | None = None
    if len(split.test_retain):
        if all(zs[k] is not None for k in ("forget", "retain", "test")):
            feats = {k: sample_features(zs[k]["logits"].float().numpy(), zs[k]["labels"].numpy())  # type: ignore[index]
                     for k in ("forget", "retain", "test")}
            names: list[str] = list(FEATURES)
        else:
            feats = {k: _pair_cosine(model, bundle, subsample(d, cfg.mia_max_samples, seed + 6), cfg)[:, None]
                     for k, d in (("forget", split.forget), ("retain", split.retain), ("test", split.test_retain))}
            names = ["pair_cosine"]
        rng = np.random.default_rng(seed)
        lim = cfg.mia_max_samples
        feats = {k: (v[rng.choice(len(v), lim, replace=False)] if len(v) > lim else v) for k, v in feats.items()}
        mia = {"features": names, **membership_inference(feats["retain"], feats["test"], feats["forget"], seed)}
    out["mia"] = mia
    out["mia_informative"] = bool(mia and mia["informative"])
    out["mia_attack_accuracy"] = mia["attack_balanced_accuracy"] if mia else None
    out["mia_efficacy"] = mia["efficacy"] if mia and mia["informative"] else None
    return out


def forget_score(model, bundle, forget: ImageTextData, classnames, cfg: UnlearnConfig) -> float:
    """The D_f quantity relearning tries to recover: zero-shot accuracy when labelled, else i2t R@1."""
    res = _zero_shot(model, bundle, forget, classnames, cfg)
    if res is not None:
        return 100.0 * res["accuracy"]
    r = retrieval_eval(model, bundle.tokenizer, forget, bundle.preprocess_eval,
                       batch_size=cfg.eval_batch_size, device=_device(model))
    return float(r["i2t_R@1"])


def relearn_steps(model, bundle, split: ForgetSplit, cfg: UnlearnConfig, original_score: float) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` on D_f (CLIP loss, Adam ``cfg.relearn.lr``) until the D_f score
    reaches half of ``original_score``; checked every ``eval_every`` steps on a D_f subsample.
    Returns ``steps`` (None when the cap is hit), ``cap_hit``, target and final score."""
    from cliperase import losses
    from cliperase.trainer import BatchStream, ImageBank, pair_text, train_mode

    rc = cfg.relearn
    target = original_score / 2.0
    probe = subsample(split.forget, rc.eval_samples, cfg.seed + 7)
    classnames = split.retain.classnames
    m = copy.deepcopy(model)
    m.logit_scale.requires_grad_(False)
    opt = adam([p for p in m.parameters() if p.requires_grad], rc.lr)
    stream = BatchStream(len(split.forget), rc.batch_size, cfg.seed + 8, 1, "forget")
    bank = ImageBank(split.forget.records, bundle.preprocess_eval)
    dev = _device(m)
    score = forget_score(m, bundle, probe, classnames, cfg)
    history = [(0, score)]
    step = 0
    while score < target and step < rc.max_steps:
        train_mode(m, cfg.freeze_norm_stats)  # batches are all D_f: batch statistics would be skewed
        for _ in range(min(rc.eval_every, rc.max_steps - step)):
            idx = stream.at(step)
            texts = [pair_text(split.forget.records[i], split.forget, cfg.text, (cfg.seed, step, 99, i)) for i in idx]
            img = m.encode_image(bank(idx).to(dev))
            txt = m.encode_text(bundle.tokenizer(texts).to(dev))
            loss = losses.contrastive_loss(img, txt, m.logit_scale.exp(), texts)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        with torch.no_grad():
            score = forget_score(m, bundle, probe, classnames, cfg)
        history.append((step, score))
    reached = score >= target
    return {
        "steps": step if reached else None,
        "cap_hit": not reached,
        "max_steps": rc.max_steps,
        "target_score": target,
        "final_score": score,
        "history": history,
        "lr": rc.lr,
    }
