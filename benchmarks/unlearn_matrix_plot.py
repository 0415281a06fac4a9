"""The tables and the figure of benchmarks/unlearn_matrix, from its JSON: deltas against the original with
paired bootstrap 95 % intervals, per method (seed x class matrix), per ratio and method, per concept and method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MATRIX_KEYS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "retain_i2t_R@1")
CONCEPT_COLS = ("concept_accuracy", "concept_other_accuracy", "concept_caption_t2i_R@1", "other_caption_t2i_R@1",
                "retain_accuracy")


def _ci(b: dict[str, Any] | None) -> str:
    if not b or b.get("mean") is None:
        return "–"
    lo, hi = b["ci95"]
    return f"{b['mean']:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _table(summary: dict[str, Any], keys: tuple[str, ...], extra: bool = True) -> list[str]:
    head = ["method", "cells", *[f"Δ {k}" for k in keys]]
    if extra:
        head += ["Δ retain vs CLIPErase", "time / Retrain"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    orig = summary["original"]
    out.append("| original | " + str(len(summary["units"])) + " | "
               + " | ".join(f"{orig[k]['mean']:.1f}" if orig.get(k, {}).get("mean") is not None else "–" for k in keys)
               + (" | – | –" if extra else "") + " |")
    for r in summary["rows"]:
        cells = [r["method"], str(r["n_cells"]), *[_ci(r.get(k, {}).get("delta")) for k in keys]]
        if extra:
            t = r.get("time_ratio_to_retrain")
            cells += [_ci(r.get("retain_accuracy", {}).get("minus_cliperase")),
                      "–" if not t or t.get("mean") is None else f"{t['mean']:.3f} [{t['ci95'][0]:.3f}, {t['ci95'][1]:.3f}]"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def flat_rows(summary: dict[str, Any], keys: tuple[str, ...] = MATRIX_KEYS) -> list[dict[str, Any]]:
    """One flat row per method: the mean delta of each metric and its interval's ends (``d_<key>``,
    ``d_<key>_lo``, ``d_<key>_hi``)."""
    rows = []
    for r in summary["rows"]:
        row: dict[str, Any] = {"method": r["method"], "cells": r["n_cells"]}
        for k in keys:
            d = r.get(k, {}).get("delta") or {"mean": None, "ci95": [None, None]}
            row.update({f"d_{k}": d["mean"], f"d_{k}_lo": d["ci95"][0], f"d_{k}_hi": d["ci95"][1]})
        rows.append(row)
    return rows


def tables(result: dict[str, Any]) -> str:
    """Markdown: the original's means, then per method the mean delta [95 % interval] of each metric."""
    lines: list[str] = []
    if "classes" in result:
        lines += ["Seed x class matrix: mean delta against the original [paired bootstrap 95 % interval over "
                  "(seed, class)], points; the original row: its mean.", ""]
        lines += _table(result["classes"], MATRIX_KEYS)
        lines += ["", "CLIPErase bars on the intervals: " + ", ".join(
            f"{k} {'pass' if v['pass'] else 'FAIL'}" for k, v in result.get("bar", {}).items() if k != "all_pass"), ""]
        by = result.get("bars_by_method") or {}
        if by:
            names = [k for k in next(iter(by.values())) if k != "all_pass"]
            lines += ["The same bars for every method (value: the interval end the bar reads; the original's forget "
                      "accuracy is the same for all):", "",
                      "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for m, b in by.items():
                cells = [f"{b[k]['value']:.2f} {'pass' if b[k]['pass'] else 'FAIL'}" if b.get(k, {}).get("value")
                         is not None else "–" for k in names]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    for ratio, sec in result.get("ratios", {}).items():
        lines += [f"Forget ratio {float(ratio):.0%} of the 100 shape x colour classes:", ""]
        lines += _table(sec, MATRIX_KEYS, extra=False) + [""]
    for kw, sec in result.get("concepts", {}).items():
        lines += [f"Concept {kw!r} (keyword forget set):", ""]
        lines += _table(sec, CONCEPT_COLS, extra=False) + [""]
        for m, d in (sec.get("diffusion") or {}).items():
            if isinstance(d, dict) and "forget_detection_before" in d:
                lines.append(f"- diffusion, {m}: {kw} detected {d['forget_detection_before']:.0%} → "
                             f"{d['forget_detection_after']:.0%}; other colours {d['retain_detection_before']:.0%} → "
                             f"{d['retain_detection_after']:.0%} (largest shift {d['max_retain_detection_shift']:+.0%})")
        lines.append("")
    return "\n".join(lines)


def _errorbars(ax: Any, summary: dict[str, Any], keys: tuple[str, ...], title: str) -> None:
    rows = summary["rows"]
    for j, k in enumerate(keys):
        for i, r in enumerate(rows):
            d = r.get(k, {}).get("delta")
            if not d or d.get("mean") is None:
                continue
            lo, hi = d["ci95"]
            ax.errorbar(d["mean"], i + 0.15 * (j - (len(keys) - 1) / 2), xerr=[[d["mean"] - lo], [hi - d["mean"]]],
                        fmt="o", color=f"C{j}", capsize=2, label=k if i == 0 else None)
    ax.set_yticks(range(len(rows)), [r["method"] for r in rows])
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("Δ vs original (points), 95 % interval")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    if "classes" in result:
        _errorbars(axes[0], result["classes"], ("forget_accuracy", "retain_accuracy", "test_accuracy"),
                   f"seeds x forget classes ({len(result['classes']['units'])} cells)")
    ax = axes[1]
    ratios = result.get("ratios", {})
    if ratios:
        methods = [r["method"] for r in next(iter(ratios.values()))["rows"]]
        xs = [float(x) for x in ratios]
        for i, m in enumerate(methods):
            for key, style in (("retain_accuracy", "-o"), ("forget_accuracy", ":s")):
                ds = [next(r for r in sec["rows"] if r["method"] == m).get(key, {}).get("delta") for sec in ratios.values()]
                pts = [(x, d) for x, d in zip(xs, ds, strict=True) if d and d.get("mean") is not None]
                if pts:
                    ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts], fmt=style, color=f"C{i % 10}",
                                yerr=[[p[1]["mean"] - p[1]["ci95"][0] for p in pts], [p[1]["ci95"][1] - p[1]["mean"] for p in pts]],
                                capsize=2, label=f"{m} {key.split('_')[0]}")
        ax.set_xlabel("forget ratio (of 100 classes)")
        ax.set_ylabel("Δ vs original (points)")
        ax.legend(fontsize=6, ncol=2)
    ax.set_title("forget-ratio sweep: retain (solid) and forget (dotted)", fontsize=9)
    concepts = result.get("concepts", {})
    if concepts:
        kw, sec = next(iter(concepts.items()))
        _errorbars(axes[2], sec, ("concept_accuracy", "concept_other_accuracy", "concept_caption_t2i_R@1"),
                   f"concept {kw!r}")
    for ax, key, what in ((axes[0], "classes", "seed x class matrix"), (axes[1], "ratios", "forget-ratio sweep"),
                          (axes[2], "concepts", "concept forgetting")):
        if not result.get(key):  # a section left out of this run: say so rather than draw empty axes
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{what}:\nnot run in this result", ha="center", va="center", fontsize=11,
                    transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
