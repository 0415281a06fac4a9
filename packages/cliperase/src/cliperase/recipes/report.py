"""What a run or a comparison writes for people to read: report.md, comparison.md and comparison.png.
Every table has one scale (percent, seconds and step counts named in the column) and "–" for a missing
value; every plot names the split and sizes and has units on its axes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

# Accuracy/recall keys shown in tables (all percentages).
# forget_accuracy: held-out forget images; forget_train_accuracy: D_f. Recalls: queries of each part against the
# whole held-out gallery (cliperase.metrics.gallery_retrieval).
SUMMARY_KEYS = (
    "forget_accuracy", "forget_train_accuracy", "retain_accuracy", "test_accuracy",
    "forget_i2t_R@1", "forget_t2i_R@1", "forget_i2t_R@5", "forget_t2i_R@5",
    "retain_i2t_R@1", "retain_t2i_R@1", "retain_i2t_R@5", "retain_t2i_R@5", "mia_efficacy", "mia_attack_accuracy",
)
# comparison.md and `mm unlearn compare`'s table: column key -> header (units in the header).
COMPARISON_COLUMNS = {
    "method": "method", "forget_accuracy": "forget acc %", "forget_train_accuracy": "D_f acc %",
    "retain_accuracy": "retain acc %", "test_accuracy": "test acc %", "forget_i2t_R@1": "forget i2t R@1 %",
    "forget_t2i_R@1": "forget t2i R@1 %", "retain_i2t_R@1": "retain i2t R@1 %", "retain_t2i_R@1": "retain t2i R@1 %",
    "mia_efficacy": "MIA eff. %", "mia_attack_accuracy": "MIA attack acc %", "wall_seconds": "time s",
    "time_ratio_to_retrain": "time / Retrain", "relearn_steps": "relearn steps",
}


def fmt(v: Any, digits: str = ".3g") -> str:
    """A table cell: "–" for a missing value (never "None")."""
    return "–" if v is None else f"{v:{digits}}" if isinstance(v, float) else str(v)


def sizes_text(sizes: dict[str, Any]) -> str:
    return (f"D_f {sizes['forget']}, D_r {sizes['retain']}, test {sizes['test']} "
            f"(held-out forget {sizes['test_forget']})")


def _pm(m: dict[str, Any], k: str) -> str:
    se = (m.get("se") or {}).get(k)
    return fmt(m.get(k), ".2f") + ("" if se is None or m.get(k) is None else f" ± {se:.2f}")


def run_report(metrics: dict[str, Any]) -> str:
    """report.md of one `mm unlearn run`."""
    b, a = metrics["before"], metrics["after"]
    cfg = metrics.get("settings", {})
    retrain = "retrain_config" in metrics  # a run that trained from scratch (the reference method's record)
    steps = metrics.get("steps")
    lr = (metrics.get("retrain_config") or {}).get("lr") if retrain else cfg.get("lr")
    lines = [
        f"# Unlearning report: {metrics['method']}",
        "",
        f"Model `{metrics['model']}`, dataset `{metrics['dataset']}`, forget set: {metrics['forget']}.",
        f"Sizes: {sizes_text(metrics['sizes'])}.",
        f"{'Retrain training' if retrain else 'Unlearning'}: {fmt(steps)} steps, learning rate {fmt(lr, '.3g')}"
        + (f", batch {cfg['batch_size']} retain + {cfg['forget_batch_size']} forget pairs"
           if not retrain and "batch_size" in cfg else "") + ".",
        f"{'Retrain training' if retrain else 'Unlearning'} wall time: {metrics['wall_seconds']:.1f} s on "
        f"{metrics['world_size']} process(es).",
        *([f"**Warning: {metrics['warning']}.**"] if metrics.get("random_init") else []),
        "",
        "Percentages ± binomial standard error (points); n: images (recalls: queries) each was measured on.",
        "",
        "| metric (%) | before | after | n |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {_pm(b, k)} | {_pm(a, k)} | {fmt((a.get('n') or {}).get(k))} |" for k in SUMMARY_KEYS]
    for name, m in (("before", b), ("after", a)):
        if m.get("mia") and not m.get("mia_informative"):
            lines += ["", f"MIA {name}: uninformative (attack held-out balanced accuracy "
                          f"{fmt(m.get('mia_attack_accuracy'))} % < {m['mia']['min_informative_accuracy']:g} %), "
                          "efficacy not reported."]
    tpl = metrics.get("templates")
    if tpl:
        lines += ["", f"Zero-shot evaluation templates {tpl['evaluation']}; unlearning templates {tpl['unlearning']} "
                      "(disjoint). forget_accuracy: held-out forget images; forget_train_accuracy: D_f. Recalls: "
                      "forget / retain queries against the whole held-out gallery."]
    rl = metrics.get("relearn")
    if rl:
        lines += ["", f"Relearn: {'cap of ' + str(rl['max_steps']) + ' steps hit' if rl['cap_hit'] else str(rl['steps']) + ' steps'}"
                  f" to recover {rl['target_score']:.1f} (half the original's {rl['probe']['from']} forget score"
                  f" {rl['original_score']:.1f}); curve in relearn.png."]
    sl = metrics.get("slug")
    if sl:
        lines += ["", f"SLUG: layer `{sl['layer']}` updated once, step size {sl['step_size']:.4g} "
                      f"({sum(map(len, sl['pareto_layers'].values()))} layers on the Pareto fronts, {len(sl['searched'])} searched)."]
    t = metrics.get("timing")
    if t:
        lines += ["", "Time (s): " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}"
                                              for k, v in t.items() if isinstance(v, float))
                  + (" (original model's metrics reused from the cache)" if t.get("before_cached") else "") + "."]
    return "\n".join(lines) + "\n"


def comparison_rows(comp: dict[str, Any]) -> list[dict[str, Any]]:
    """The original and every method, cells formatted ("–" for missing), headers with units."""
    return [{h: fmt(r.get(k)) for k, h in COMPARISON_COLUMNS.items()} for r in [comp["original"], *comp["rows"]]]


def comparison_markdown(comp: dict[str, Any]) -> str:
    rows = comparison_rows(comp)
    heads = list(COMPARISON_COLUMNS.values())
    lines = [f"# Unlearning comparison — forget {comp['forget']}", "",
             f"Sizes: {sizes_text(comp['sizes'])}. Accuracies/recalls in %, time: wall seconds of the unlearning "
             "(or retraining) itself. forget acc: held-out forget images, D_f acc: the forget set itself (zero-shot "
             "templates never used by unlearning). Recalls: forget / retain queries against the whole held-out "
             "gallery. MIA eff. is left out (–) where the attack's held-out balanced accuracy is below 55 %. "
             "relearn steps: steps to recover half the original held-out forget accuracy (– = cap hit).", "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(r[h] for h in heads) + " |" for r in rows]
    if comp.get("retrain_unavailable"):
        lines += ["", "No Retrain row (no time ratios): " + comp["retrain_unavailable"]]
    ref = comp.get("relearn_reference")
    if ref:
        lines += ["", "Relearn reference (Retrain, never learned D_f): "
                  + (f"cap of {ref['max_steps']} steps hit" if ref["cap_hit"] else f"{ref['steps']} steps") + "."]
    return "\n".join(lines) + "\n"


def plot_comparison(comp: dict[str, Any], path: str | Path) -> Path:
    """comparison.png: :func:`comparison_figure`."""
    import matplotlib.pyplot as plt
    from mmcore.io import atomic_write_bytes

    fig = comparison_figure(comp)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def comparison_figure(comp: dict[str, Any]) -> Any:
    """Two panels: held-out forget vs retain zero-shot accuracy per method (the original a star drawn on top),
    and each method's wall time as linear bars from 0 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comp["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
    markers = "osD^vP<>Xhp"
    kind = "zero-shot accuracy"
    for i, r in enumerate(rows):
        x, y = r.get("forget_accuracy"), r.get("retain_accuracy")
        if x is None or y is None:
            x, y, kind = r.get("forget_i2t_R@1"), r.get("retain_i2t_R@1"), "image→text R@1"
        if x is None or y is None:
            continue
        # a legend, not text labels: the good methods crowd into one corner; each later marker is drawn
        # smaller, so methods at the same point stay visible as nested markers
        ax1.scatter([x], [y], marker=markers[i % len(markers)], s=max(150 - 14 * i, 20), label=r["method"],
                    color=f"C{i % 10}",
                    alpha=0.8, edgecolors="k", linewidths=0.5, zorder=3)
    o = comp["original"]
    ox, oy = (o.get("forget_accuracy"), o.get("retain_accuracy")) if kind == "zero-shot accuracy" else \
        (o.get("forget_i2t_R@1"), o.get("retain_i2t_R@1"))
    if ox is not None and oy is not None:
        # last and highest: the original is never hidden under a method's marker
        ax1.scatter([ox], [oy], marker="*", s=320, facecolors="none", edgecolors="k", linewidths=1.6,
                    label="original", zorder=5)
    ax1.legend(fontsize=7, loc="best", ncol=2, framealpha=0.9)
    ax1.set_xlabel(f"held-out forget {kind} (%) — lower is better")
    ax1.set_ylabel(f"retain {kind} (%) — higher is better")
    ax1.grid(alpha=0.3)
    names = [r["method"] for r in rows]
    secs = [r["wall_seconds"] for r in rows]
    ax2.barh(range(len(rows)), secs, color=[f"C{i % 10}" for i in range(len(rows))], alpha=0.8)
    ax2.set_yticks(range(len(rows)), names, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlim(0, max(secs, default=1) * 1.18)
    for i, s in enumerate(secs):
        ax2.text(s, i, f" {s:.3g} s", va="center", fontsize=8)
    ax2.set_xlabel("wall time of the unlearning / retraining (s)")
    ax2.set_title("time per method (linear, from 0 s)", fontsize=10)
    ax2.grid(axis="x", alpha=0.3)
    s = comp["sizes"]
    fig.suptitle(f"Unlearning {comp['forget']}: D_f {s['forget']}, D_r {s['retain']} training images; held-out "
                 f"{s['test']} images ({s['test_forget']} of the forget set)", fontsize=11)
    fig.tight_layout()
    return fig
