"""Unlearning metrics. All accuracies and recalls are percentages (0–100).

- Zero-shot accuracy with the run's evaluation templates (:mod:`cliperase.templates`: none of them, and no
  caption equal to one of their prompts, is ever a pair text of unlearning). ``forget_accuracy`` (the headline)
  is on the held-out forget images (the test split of the forget set), ``forget_train_accuracy`` on D_f itself;
  ``retain_accuracy`` on D_r, ``test_accuracy`` on the held-out test samples outside the forget set (the usual
  "TA"); per class too.
- Retrieval Recall@1/5/10 image→text and text→image against ONE held-out gallery (:func:`gallery_retrieval`):
  the held-out forget and retain images (each part a seeded subsample of at most ``cfg.retrieval_max_pairs``)
  with all their captions, identical captions one text owned by all their images. ``forget_*`` are the recalls
  of the forget images' queries and of the texts a forget image owns, ``retain_*`` those of the others; every
  query is ranked against the whole gallery, so forgetting shows as forget queries losing to other classes.
- Concept forgetting (a keyword forget set, :mod:`cliperase.concepts`): ``concept_caption_t2i_R@K`` /
  ``other_caption_t2i_R@K`` (the gallery's captions naming the keyword or not) and, where the keyword is an
  attribute value of the records (shapes: a colour, size or position), ``concept_accuracy`` /
  ``concept_other_accuracy``: zero-shot accuracy of that attribute on held-out images with / without it.
- Membership-inference efficacy on D_f with the community protocol (:mod:`cliperase.mia`; SalUn /
  Jia et al. 2023): per-sample loss, confidence and entropy of the zero-shot class distribution (datasets
  without labels: the cosine similarity of the image and its first caption); a logistic-regression attack
  trained on retain samples (members) vs held-out test-retain samples (non-members), equal sizes
  (≤ ``cfg.mia_max_samples`` each); its balanced accuracy on a held-out half of those; MIA efficacy = percent
  of D_f it calls non-member. Below 55 % held-out accuracy the attack is no better than chance:
  ``mia_informative`` is False and ``mia_efficacy`` is None (the raw number stays in ``mia["efficacy"]``),
  so tables do not print it as a result.
- Relearn time (:func:`cliperase.relearn.relearn_steps`): fine-tuning steps, on batches mixing D_f and D_r,
  until the held-out forget accuracy (:func:`forget_score` on :func:`probe_set`) recovers half of the original
  model's.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from mmcore.data.records import ImageTextData
from mmcore.eval.retrieval import encode_images, encode_texts, retrieval_eval, texts_and_owners
from mmcore.eval.zeroshot import zero_shot_eval

from cliperase.concepts import caption_recalls, concept_attribute, concept_zero_shot
from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit
from cliperase.mia import FEATURES, membership_inference, sample_features
from cliperase.progress import stage
from cliperase.templates import config_templates

RETRIEVAL_KS = (1, 5, 10)


def subsample(data: ImageTextData, k: int, seed: int) -> ImageTextData:
    """At most ``k`` records (``k <= 0`` keeps all), a seeded choice kept in the original order."""
    if k <= 0 or len(data) <= k:
        return data
    return data.subset(sorted(random.Random(seed).sample(range(len(data)), k)))


def is_labelled(data: ImageTextData) -> bool:
    return bool(data.classnames) and len(data) > 0 and all(r.label is not None for r in data.records)


def _zero_shot(model, bundle, data: ImageTextData, classnames, templates, cfg: UnlearnConfig) -> dict[str, Any] | None:
    if not len(data) or not is_labelled(data):
        return None
    return zero_shot_eval(model, bundle.tokenizer, data, bundle.preprocess_eval, classnames=classnames,
                          templates=list(templates), batch_size=cfg.eval_batch_size, device=_device(model),
                          return_predictions=True)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


def _pct_hits(hits: torch.Tensor) -> float | None:
    return 100.0 * int(hits.sum()) / hits.numel() if hits.numel() else None


def _pair_cosine(model, bundle, data: ImageTextData, cfg: UnlearnConfig) -> np.ndarray:
    img = encode_images(model, data, bundle.preprocess_eval, batch_size=cfg.eval_batch_size, device=_device(model))
    txt = encode_texts(model, bundle.tokenizer, [r.captions[0] for r in data.records],
                       batch_size=cfg.eval_batch_size, device=_device(model))
    return (img * txt).sum(-1).cpu().numpy()


def gallery_parts(split: ForgetSplit) -> tuple[ImageTextData, ImageTextData, str, str]:
    """The forget and retain parts of the retrieval gallery: the held-out images, or D_f / D_r where the
    held-out data has none (an ids forget set puts every test image in test-retain); and where each comes from."""
    f, f_from = (split.test_forget, "held-out") if len(split.test_forget) else (split.forget, "train")
    r, r_from = (split.test_retain, "held-out") if len(split.test_retain) else (split.retain, "train")
    return f, r, f_from, r_from


def gallery_retrieval(model, bundle, forget: ImageTextData, retain: ImageTextData, cfg: UnlearnConfig,
                      seed: int, max_pairs: int | None = None, keyword: str | None = None) -> dict[str, Any]:
    """Recall@K (percent) of forget and of retain queries, both directions, in ONE gallery: ``forget`` and
    ``retain`` images (each a seeded subsample of at most ``max_pairs``, default ``cfg.retrieval_max_pairs``)
    with all their captions, identical captions one text owned by all their images
    (:func:`mmcore.eval.retrieval.retrieval_eval`, ``unique_texts=True``).

    Forget image→text: a forget image's hit when one of its texts is in the top K of ALL gallery texts;
    forget text→image: a text owned by a forget image is a hit when one of its images is in the top K of ALL
    gallery images. Retain: the other images and texts. Returns ``{"forget": {...}, "retain": {...},
    "gallery": {...}}``; each part has ``n_images`` / ``n_texts`` (its queries) and the recalls (None with no
    query). With ``keyword``, also ``"captions"``: the text→image recalls of the texts naming it and of the
    others (:func:`cliperase.concepts.caption_recalls`)."""
    k = cfg.retrieval_max_pairs if max_pairs is None else max_pairs
    f, r = subsample(forget, k, seed), subsample(retain, k, seed + 1)
    res = retrieval_eval(model, bundle.tokenizer, f.records + r.records, bundle.preprocess_eval, ks=RETRIEVAL_KS,
                         batch_size=cfg.eval_batch_size, device=_device(model), return_hits=True)
    hits, owners = res.pop("hits"), res.pop("text_owners")
    n_f = len(f)
    dev = hits["has_text"].device
    forget_img = torch.arange(len(f) + len(r), device=dev) < n_f
    forget_txt = torch.tensor([any(i < n_f for i in o) for o in owners], dtype=torch.bool, device=dev)
    out: dict[str, Any] = {}
    for part, img_q, txt_q in (("forget", forget_img & hits["has_text"], forget_txt),
                               ("retain", ~forget_img & hits["has_text"], ~forget_txt)):
        d: dict[str, Any] = {"n_images": int(img_q.sum()), "n_texts": int(txt_q.sum())}
        d.update({f"i2t_R@{k}": _pct_hits(hits[f"i2t_R@{k}"][img_q]) for k in RETRIEVAL_KS})
        d.update({f"t2i_R@{k}": _pct_hits(hits[f"t2i_R@{k}"][txt_q]) for k in RETRIEVAL_KS})
        out[part] = d
    out["gallery"] = {**res, "n_forget_images": n_f, "n_retain_images": len(r), "unique_texts": True}
    if keyword is not None:
        texts = texts_and_owners([rec.captions for rec in f.records + r.records])[0]  # retrieval_eval's texts
        out["captions"] = caption_recalls(hits, texts, keyword, RETRIEVAL_KS)
    return out


def probe_set(split: ForgetSplit, cfg: UnlearnConfig) -> tuple[ImageTextData, str]:
    """The forget images relearning is scored on: a seeded subsample (``cfg.relearn.eval_samples``) of the
    held-out forget images, or of D_f where there are none; and which it is."""
    data, where = (split.test_forget, "held-out") if len(split.test_forget) else (split.forget, "train")
    return subsample(data, cfg.relearn.eval_samples, cfg.seed + 7), where


@torch.no_grad()
def evaluate_split(model, bundle, split: ForgetSplit, cfg: UnlearnConfig, label: str = "eval") -> dict[str, Any]:
    """All metrics of ``model`` on one forget/retain/test split (single process; see module doc); one
    progress bar named ``label`` and the images it encodes."""
    model.eval()
    seed = cfg.seed
    templates = config_templates(split.retain, cfg)
    sets = {
        "forget": subsample(split.test_forget, cfg.eval_max_samples, seed + 3),  # held out: the headline
        "forget_train": subsample(split.forget, cfg.eval_max_samples, seed),
        "retain": subsample(split.retain, cfg.eval_max_samples, seed + 1),
        "test": subsample(split.test_retain, cfg.eval_max_samples, seed + 2),
    }
    f_part, r_part, f_from, r_from = gallery_parts(split)
    k = cfg.retrieval_max_pairs
    n_gallery = min(len(f_part), k if k > 0 else len(f_part)) + min(len(r_part), k if k > 0 else len(r_part))
    zs_sets = {k: d for k, d in sets.items() if is_labelled(d)}
    keyword = cfg.forget.keyword
    held_out = split.test_forget.records + split.test_retain.records
    concept = concept_attribute(held_out, keyword) if keyword is not None else None
    n_concept = len(sets["forget"]) + len(sets["test"]) if concept else 0
    with stage(f"{label} · " + "".join(f"{_NAMES[k]} {len(d)} + " for k, d in zs_sets.items())
               + f"gallery {n_gallery} images" + (f" + concept {n_concept}" if concept else ""),
               sum(map(len, zs_sets.values())) + n_gallery + n_concept) as advance:
        out = _evaluate(model, bundle, split, cfg, sets, templates, (f_part, r_part, f_from, r_from), advance)
        if concept is not None:
            attr, values, _words = concept
            out["concept"] = {"keyword": keyword, **concept_zero_shot(model, bundle, sets["forget"], sets["test"],
                                                                       attr, values, cfg.eval_batch_size)}
            out["concept_accuracy"] = out["concept"]["concept_accuracy"]
            out["concept_other_accuracy"] = out["concept"]["other_accuracy"]
            advance(n_concept)
    out["n"], out["se"] = precision(out)
    return out


_NAMES = {"forget": "held-out forget", "forget_train": "D_f", "retain": "D_r", "test": "test"}


def _evaluate(model, bundle, split, cfg, sets, templates, parts, advance) -> dict[str, Any]:
    seed, classnames = cfg.seed, split.retain.classnames
    out: dict[str, Any] = {}
    zs = {}
    for k, d in sets.items():
        zs[k] = _zero_shot(model, bundle, d, classnames, templates.evaluation, cfg)
        advance(len(d) if zs[k] is not None else 0)
    for k, res in zs.items():
        out[f"{k}_accuracy"] = _pct(res["accuracy"]) if res else None
    out["per_class_accuracy"] = {
        k: {c: 100.0 * a for c, a in res["per_class"].items()} for k, res in zs.items() if res
    }
    out["zero_shot_n"] = {k: (res["n"] if res else 0) for k, res in zs.items()}
    out["zero_shot_templates"] = list(templates.evaluation)

    f_part, r_part, f_from, r_from = parts
    retrieval = gallery_retrieval(model, bundle, f_part, r_part, cfg, seed + 4, keyword=cfg.forget.keyword)
    advance(retrieval["gallery"]["n_forget_images"] + retrieval["gallery"]["n_retain_images"])
    retrieval["gallery"].update(forget_part=f_from, retain_part=r_from)
    for part in ("forget", "retain"):
        out.update({f"{part}_{name}": v for name, v in retrieval[part].items() if "@" in name})
    for part in ("concept", "other"):
        out.update({f"{part}_caption_{name}": v for name, v in retrieval.get("captions", {}).get(part, {}).items()
                    if "@" in name})
    out["retrieval"] = retrieval

    # Membership inference on D_f: attack trained on retain (members) vs test-retain (non-members).
    mia: dict[str, Any] | None = None
    if len(split.test_retain):
        keys = {"forget": "forget_train", "retain": "retain", "test": "test"}
        if all(zs[k] is not None for k in keys.values()):
            feats = {k: sample_features(zs[z]["logits"].float().numpy(), zs[z]["labels"].numpy())  # type: ignore[index]
                     for k, z in keys.items()}
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


def standard_error(pct: float | None, n: int) -> float | None:
    """Binomial standard error, in points, of a percentage measured on ``n`` samples."""
    if pct is None or n <= 0:
        return None
    p = min(max(pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def precision(m: dict[str, Any]) -> tuple[dict[str, int], dict[str, float | None]]:
    """The number of samples each headline percentage of :func:`evaluate_split` was measured on, and its
    binomial standard error in points (recalls: per query; MIA efficacy: D_f samples scored, attack accuracy:
    its held-out samples)."""
    n: dict[str, int] = {f"{k}_accuracy": v for k, v in m["zero_shot_n"].items()}
    for part in ("forget", "retain"):
        r = m["retrieval"][part]
        n.update({f"{part}_{d}_R@{k}": r["n_images" if d == "i2t" else "n_texts"]
                  for d in ("i2t", "t2i") for k in RETRIEVAL_KS})
    for part in ("concept", "other"):
        if part in m["retrieval"].get("captions", {}):
            n.update({f"{part}_caption_t2i_R@{k}": m["retrieval"]["captions"][part]["n_texts"] for k in RETRIEVAL_KS})
    if m.get("concept"):
        n["concept_accuracy"], n["concept_other_accuracy"] = m["concept"]["concept_n"], m["concept"]["other_n"]
    if m["mia"]:
        n["mia_efficacy"], n["mia_attack_accuracy"] = m["mia"]["n_target"], m["mia"]["n_attack_holdout"]
    return n, {k: standard_error(m.get(k), v) for k, v in n.items()}


def forget_score(model, bundle, probe: ImageTextData, split: ForgetSplit, cfg: UnlearnConfig) -> float:
    """The forget quantity relearning tries to recover, on ``probe`` (:func:`probe_set`): zero-shot accuracy
    with the evaluation templates when labelled, else the probe's image→text R@1 in a gallery with (as many)
    retain images."""
    templates = config_templates(split.retain, cfg)
    res = _zero_shot(model, bundle, probe, split.retain.classnames, templates.evaluation, cfg)
    if res is not None:
        return 100.0 * res["accuracy"]
    _f, retain, _ff, _rf = gallery_parts(split)
    r = gallery_retrieval(model, bundle, probe, retain, cfg, cfg.seed + 10, max_pairs=max(len(probe), 1))
    return float(r["forget"]["i2t_R@1"] or 0.0)
