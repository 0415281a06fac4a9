"""SLUG, Single Layer Unlearning Gradient (Cai, Tan, Asif, ICML 2025; public code CSIPlab/SLUG,
``src/clip/unlearn/calc_grad.py`` and ``src/clip/unlearn_slug.py``), rebuilt from its description and code.

1. One gradient computation on each set, averaged over its batches (:func:`slug_gradients`): on D_f the
   gradient g_f of the mean cosine similarity of the forget pairs (the public code back-propagates
   ``-CosineEmbeddingLoss(img, txt, 1) = mean cos - 1``), on D_r the gradient g_r of the CLIP loss (here with
   identical texts as positives of each other, as every contrastive loss of this package).
2. Per layer (:func:`layer_scores`; parameters of at least one dimension, none whose name holds "bias",
   "logit_scale", "position" or "embedding", as published): importance ``||g_f|| / ||theta||`` and alignment
   ``|cos(g_f, g_r)|``.
3. The Pareto front of each tower (:func:`pareto_front`; vision = names with "visual"): the layers that no
   other layer of the tower beats with both a strictly lower alignment and a strictly higher importance.
4. For each layer on the fronts (:func:`search_step`), the published binary search on the step size
   ``lambda`` of ``theta <- theta - lambda * g_f``: first ``lambda = ||theta|| / ||g_f|| / 10``; after each
   evaluation, shrink to the midpoint below when the forget validation accuracy is at most the target,
   else grow (double while no upper bound is known, else the midpoint above); 10 evaluations. Validation
   data: D_f and D_r training images (seeded subsamples), zero-shot with the unlearning templates: never the
   held-out data nor the evaluation templates.
5. The public code logs every layer's search and leaves the choice to the reader; here the rule is written
   down: per layer the evaluated step meeting the target with the best retain validation accuracy (none
   meeting it: the lowest forget accuracy), then the layer whose chosen step meets the target with the best
   retain validation accuracy. That layer gets its one update.

The gradient pass runs in train mode as published, with BatchNorm statistics left as they are (the public
pass would also update them, which is no part of the method).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from mmcore.run import TrainingRun
from torch import nn

from cliperase import losses
from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit
from cliperase.metrics import gallery_retrieval, is_labelled, subsample
from cliperase.step_types import UnlearnResult
from cliperase.templates import Templates, config_templates
from cliperase.training import pair_text, train_mode

EXCLUDED_NAME_PARTS = ("bias", "logit_scale", "position", "embedding")  # never candidates (published filter)
TOWERS = ("vision", "language")


def tower_of(name: str) -> str:
    return "vision" if "visual" in name else "language"


def _cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> float:
    """Cosine of two flattened tensors in float64, each norm clamped at ``eps`` (torch's cosine_similarity)."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    return float((a @ b) / (a.norm().clamp_min(eps) * b.norm().clamp_min(eps)))


def layer_scores(params: dict[str, torch.Tensor], forget_grads: dict[str, torch.Tensor],
                 retain_grads: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """``{name: {"importance", "alignment", "tower"}}`` for every candidate layer (see the module doc): a
    parameter of at least one dimension, no excluded name part, non-zero weights and forget gradient."""
    out: dict[str, dict[str, Any]] = {}
    for name, p in params.items():
        if p.ndim == 0 or any(part in name for part in EXCLUDED_NAME_PARTS):
            continue
        gf, gr = forget_grads.get(name), retain_grads.get(name)
        if gf is None or gr is None:
            continue
        g_norm, p_norm = float(gf.detach().double().norm()), float(p.detach().double().norm())
        if g_norm == 0.0 or p_norm == 0.0:  # no forget signal, or all-zero weights (no relative step exists)
            continue
        out[name] = {"importance": g_norm / p_norm,
                     "alignment": abs(_cosine(gf, gr)), "tower": tower_of(name)}
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the ``(alignment, importance)`` points that no other point dominates, i.e. beats with a
    strictly lower alignment and a strictly higher importance at once."""
    return [i for i, (a, imp) in enumerate(points)
            if not any(a2 < a and imp2 > imp for a2, imp2 in points)]


def pareto_layers(scores: dict[str, dict[str, Any]], towers: tuple[str, ...] = TOWERS) -> dict[str, list[str]]:
    """The Pareto front of each tower in ``towers`` (layer names, highest importance first)."""
    fronts: dict[str, list[str]] = {}
    for tower in towers:
        names = [n for n, s in scores.items() if s["tower"] == tower]
        idx = pareto_front([(scores[n]["alignment"], scores[n]["importance"]) for n in names])
        fronts[tower] = sorted((names[i] for i in idx), key=lambda n: -scores[n]["importance"])
    return fronts


def search_step(evaluate: Callable[[float], tuple[float, float]], first_step: float, target: float,
                iters: int) -> list[dict[str, float]]:
    """The published binary search on the step size: ``evaluate(step) -> (forget_val, retain_val)`` (percent)
    at ``first_step``, then ``iters - 1`` more steps, each the midpoint below the last step when its forget
    accuracy was at most ``target``, else above it (doubling while no step has met the target yet).
    Returns every evaluation ``{"step_size", "forget_val", "retain_val"}`` in order."""
    trace: list[dict[str, float]] = []
    low, high, step = 0.0, math.inf, first_step
    for it in range(iters):
        if it:
            if trace[-1]["forget_val"] <= target:
                high = step
                step = (low + high) / 2
            else:
                low = step
                step = (low + high) / 2 if math.isfinite(high) else step * 2
        f, r = evaluate(step)
        trace.append({"step_size": step, "forget_val": f, "retain_val": r})
    return trace


def choose_step(trace: list[dict[str, float]], target: float) -> dict[str, Any]:
    """The evaluated step meeting ``target`` with the best retain accuracy (then the smaller step); when none
    meets it, the lowest forget accuracy (then the best retain accuracy)."""
    ok = [t for t in trace if t["forget_val"] <= target]
    if ok:
        best = max(ok, key=lambda t: (t["retain_val"], -t["step_size"]))
    else:
        best = min(trace, key=lambda t: (t["forget_val"], -t["retain_val"], t["step_size"]))
    return {**best, "meets_target": bool(ok)}


def _batches(n: int, k: int, bs: int, seed: int) -> list[list[int]]:
    import random

    idx = list(range(n)) if k <= 0 or k >= n else sorted(random.Random(seed).sample(range(n), k))
    return [idx[i:i + bs] for i in range(0, len(idx), bs)]


def slug_gradients(model: nn.Module, bundle: Any, split: ForgetSplit, cfg: UnlearnConfig, templates: Templates,
                   device: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, int]]:
    """The forget and retain gradients (float32, per parameter name), each averaged over its batches (as the
    public ``calc_grad``), and the number of pairs each saw. ``model`` keeps its weights; its gradients are
    cleared."""
    from mmcore.data.loading import image_batches

    sc = cfg.slug
    model.requires_grad_(True)
    train_mode(model, freeze_norm_stats=True)
    named = dict(model.named_parameters())
    grads: dict[str, dict[str, torch.Tensor]] = {}
    seen: dict[str, int] = {}
    plan = (("forget", split.forget, sc.forget_grad_samples, cfg.forget_batch_size, cfg.forget_text or cfg.text, "f"),
            ("retain", split.retain, sc.retain_grad_samples, cfg.batch_size, cfg.text, "r"))
    for what, data, k, bs, mode, key in plan:
        acc = {n: torch.zeros_like(p) for n, p in named.items()}
        batches = _batches(len(data), k, bs, cfg.seed + ord(key))
        # decoded in DataLoader workers, batch after batch: one pass, nothing kept
        images = image_batches(data.records, bundle.preprocess_eval, batches, num_workers=cfg.num_workers,
                               pin_memory=torch.device(device).type == "cuda")
        for b, batch_images in zip(batches, images, strict=True):
            texts = [pair_text(data.records[i], data, mode, (cfg.seed, 0, ord(key), i), templates) for i in b]
            img = model.encode_image(batch_images.to(device, non_blocking=True), normalize=False)
            txt = model.encode_text(bundle.tokenizer(texts).to(device), normalize=False)
            if what == "forget":
                loss = losses.forget_loss(img, txt, "cosine")  # mean cos of the pairs: its gradient is g_f
            else:
                loss = losses.contrastive_loss(img, txt, model.logit_scale.exp(), texts)
            model.zero_grad(set_to_none=True)
            loss.backward()
            for n, p in named.items():
                if p.grad is not None:
                    acc[n] += p.grad
        model.zero_grad(set_to_none=True)
        grads[what] = {n: g / max(len(batches), 1) for n, g in acc.items()}
        seen[what] = sum(len(b) for b in batches)
    model.eval()
    return grads["forget"], grads["retain"], seen


def _validation(model: nn.Module, bundle: Any, split: ForgetSplit, cfg: UnlearnConfig,
                templates: Templates) -> tuple[Callable[[], tuple[float, float]], dict[str, Any]]:
    """A function giving the (forget, retain) validation scores (percent) of ``model`` as it is now, and what
    they are: zero-shot accuracy with the unlearning templates on D_f / D_r training subsamples, or (no class
    labels or no unlearning template) the image→text R@1 of each part in a gallery of both."""
    from mmcore.eval.zeroshot import zero_shot_eval

    k = cfg.slug.val_samples
    f_val, r_val = subsample(split.forget, k, cfg.seed + 11), subsample(split.retain, k, cfg.seed + 12)
    zero_shot = bool(templates.unlearning) and is_labelled(f_val) and is_labelled(r_val)

    def scores() -> tuple[float, float]:
        with torch.no_grad():
            if zero_shot:
                dev = next(model.parameters()).device
                return tuple(100.0 * zero_shot_eval(model, bundle.tokenizer, d, bundle.preprocess_eval,  # type: ignore[return-value]
                                                    classnames=split.retain.classnames,
                                                    templates=list(templates.unlearning),
                                                    batch_size=cfg.eval_batch_size, device=dev)["accuracy"]
                             for d in (f_val, r_val))
            r = gallery_retrieval(model, bundle, f_val, r_val, cfg, cfg.seed + 13, max_pairs=max(k, 0))
            return float(r["forget"]["i2t_R@1"] or 0.0), float(r["retain"]["i2t_R@1"] or 0.0)

    what = {"forget_images": len(f_val), "retain_images": len(r_val), "data": "D_f / D_r training subsamples",
            "score": "zero-shot accuracy, unlearning templates" if zero_shot else "i2t R@1 in a D_f + D_r gallery"}
    return scores, what


def slug_unlearn(bundle: Any, split: ForgetSplit, cfg: UnlearnConfig, accelerator: Any,
                 run: TrainingRun | None = None, towers: str = "both") -> Any:
    """Run SLUG on ``bundle.model`` (modified in place: one layer updated once) and return an
    :class:`~cliperase.training.UnlearnResult` whose ``info`` records the scores, fronts, searches and choice.
    Every process computes the same thing (no data is sharded: one gradient pass is cheap). ``run``: where
    the search and the choice are logged (None: nowhere). ``towers``: "text" searches the language layers only,
    "both" both towers' fronts (SLUG's published setting)."""
    t0 = time.perf_counter()
    sc = cfg.slug
    model = bundle.model
    device = accelerator.device
    templates = config_templates(split.retain, cfg)
    g_f, g_r, seen = slug_gradients(model, bundle, split, cfg, templates, device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    scores = layer_scores(params, g_f, g_r)
    searched_towers = ("language",) if towers == "text" else TOWERS
    fronts = pareto_layers(scores, searched_towers)
    candidates = sorted({n for names in fronts.values() for n in names}, key=lambda n: -scores[n]["importance"])
    if sc.max_layers > 0:
        candidates = candidates[:sc.max_layers]
    if not candidates:
        from mmcore.errors import MMError

        raise MMError("SLUG: no layer has a forget gradient (is the forget set empty of usable pairs?)")
    val_scores, val_info = _validation(model, bundle, split, cfg, templates)
    base_forget, base_retain = val_scores()
    run = run or TrainingRun(None, accelerator)
    searched: dict[str, dict[str, Any]] = {}
    for name in candidates:
        p, theta0, g = dict(model.named_parameters())[name], params[name].clone(), g_f[name]

        def evaluate(step: float, p=p, theta0=theta0, g=g, name=name) -> tuple[float, float]:
            with torch.no_grad():
                p.copy_(theta0 - step * g)
            f, r = val_scores()
            with torch.no_grad():
                p.copy_(theta0)
            run.log({"phase": "slug_search", "layer": name, "step_size": step, "forget_val": f, "retain_val": r})
            return f, r

        first = sc.initial_fraction * float(theta0.double().norm()) / float(g.double().norm())
        trace = search_step(evaluate, first, sc.target_accuracy, sc.search_iters)
        searched[name] = {"trace": trace, "chosen": choose_step(trace, sc.target_accuracy)}
    layer = max(candidates, key=lambda n: (searched[n]["chosen"]["meets_target"], searched[n]["chosen"]["retain_val"],
                                           -searched[n]["chosen"]["forget_val"], scores[n]["importance"]))
    chosen = searched[layer]["chosen"]
    with torch.no_grad():
        dict(model.named_parameters())[layer].sub_(chosen["step_size"] * g_f[layer])
    model.eval()
    info = {
        "layer": layer, "tower": scores[layer]["tower"], "step_size": chosen["step_size"],
        "importance": scores[layer]["importance"], "alignment": scores[layer]["alignment"],
        "validation_after": {"forget": chosen["forget_val"], "retain": chosen["retain_val"]},
        "validation_before": {"forget": base_forget, "retain": base_retain},
        "meets_target": chosen["meets_target"], "target_accuracy": sc.target_accuracy,
        "pareto_layers": fronts, "searched": searched, "scores": scores,
        "gradient_pairs": seen, "validation": val_info, "towers": list(searched_towers),
    }
    last = {"forget_val": chosen["forget_val"], "retain_val": chosen["retain_val"], "step_size": chosen["step_size"]}
    run.log({"phase": "unlearn", "method": "slug", "layer": layer, **last}, step=1)
    return UnlearnResult(model, time.perf_counter() - t0, 1, 0, last, info)

