"""Relearn time, a robustness check of unlearning (:class:`~cliperase.config.RelearnConfig`): fine-tune a copy
of the model on batches mixing D_f and D_r until the forget score (:func:`cliperase.metrics.forget_score` on
:func:`cliperase.metrics.probe_set`) recovers half of the original model's (:func:`relearn_steps`), and the plot
of those curves (:func:`plot_relearn`)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from mmcore.distributed import StepBatches
from mmcore.optim import adam

from cliperase import losses
from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit
from cliperase.metrics import forget_score, is_labelled, probe_set
from cliperase.progress import stage
from cliperase.templates import config_templates
from cliperase.training import ImageBank, pair_text


def relearn_steps(model, bundle, split: ForgetSplit, cfg: UnlearnConfig, original_score: float) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` (Adam ``cfg.relearn.lr``, the CLIP loss with identical texts as positives)
    until its :func:`forget_score` on the probe reaches half of ``original_score``; checked every
    ``eval_every`` steps. See :class:`~cliperase.config.RelearnConfig` for the protocol: both towers trained,
    BatchNorm in train mode, each batch ``forget_fraction`` D_f pairs and the rest D_r pairs, class prompts
    of the unlearning templates. Returns ``steps`` (None when the cap is hit), ``cap_hit``, the target, the
    final score and the ``curve`` [{step, score}]."""
    rc = cfg.relearn
    target = original_score / 2.0
    probe, probe_from = probe_set(split, cfg)
    templates = config_templates(split.retain, cfg)
    m = copy.deepcopy(model)
    m.requires_grad_(True)  # both towers, whatever unlearning froze
    m.logit_scale.requires_grad_(False)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = adam(params, rc.lr)
    n_f = min(max(1, round(rc.batch_size * rc.forget_fraction)), rc.batch_size - 1)
    parts = [(StepBatches.for_processes(len(split.forget), n_f, cfg.seed + 8, 1, "forget"),
              ImageBank(split.forget.records, bundle.preprocess_eval), split.forget, 98),
             (StepBatches.for_processes(len(split.retain), rc.batch_size - n_f, cfg.seed + 9, 1, "retain"),
              ImageBank(split.retain.records, bundle.preprocess_eval), split.retain, 99)]
    dev = next(m.parameters()).device
    label = (f"relearn · up to {rc.max_steps} steps of {rc.batch_size} pairs, probe {len(probe)} {probe_from} "
             "forget images")
    with stage(label, rc.max_steps) as advance:
        score = forget_score(m, bundle, probe, split, cfg)
        curve = [{"step": 0, "score": score}]
        step = 0
        while score < target and step < rc.max_steps:
            m.train()  # BatchNorm as in pretraining: batch statistics of mixed D_f + D_r batches
            for _ in range(min(rc.eval_every, rc.max_steps - step)):
                images, texts = [], []
                for stream, bank, data, tag in parts:
                    idx = stream.at(step)
                    images.append(bank(idx))
                    texts += [pair_text(data.records[i], data, rc.text, (cfg.seed, step, tag, i), templates) for i in idx]
                img = m.encode_image(torch.cat(images).to(dev))
                txt = m.encode_text(bundle.tokenizer(texts).to(dev))
                loss = losses.contrastive_loss(img, txt, m.logit_scale.exp(), texts)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                advance()
            m.eval()
            with torch.no_grad():
                score = forget_score(m, bundle, probe, split, cfg)
            curve.append({"step": step, "score": score})
    reached = score >= target
    return {
        "steps": step if reached else None,
        "cap_hit": not reached,
        "max_steps": rc.max_steps,
        "original_score": original_score,
        "target_score": target,
        "final_score": score,
        "curve": curve,
        "probe": {"images": len(probe), "from": probe_from,
                  "score": "zero-shot accuracy (evaluation templates)" if is_labelled(probe) else "i2t R@1"},
        "lr": rc.lr,
        "batch": {"forget": n_f, "retain": rc.batch_size - n_f, "text": rc.text},
    }


def plot_relearn(curves: dict[str, list[dict[str, float]]], target: float | None, path: Any,
                 title: str = "relearn") -> Any:
    """Score (percent) against relearn steps, one line per model, the half-of-original target dashed."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mmcore.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot([p["step"] for p in curve], [p["score"] for p in curve], marker="o", ms=3, label=name, color=f"C{i % 10}")
    if target is not None:
        ax.axhline(target, ls="--", color="k", lw=1, label="half the original")
    ax.set_xlabel("relearn step")
    ax.set_ylabel("forget score (%): held-out forget accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
