"""The figure of benchmarks/unlearn_shapes: forget vs retain accuracy, time, relearning (from its JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEST_CLASS = "circle"
TABLE_ORDER = ["original", "cliperase", "cliperase-paper", "slug", "multidelete", "ga", "graddiff", "ft", "retrain",
               "cliperase-fm", "cliperase-fm+rm"]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = result["test"]
    rows = {r["method"]: r for r in t["rows"]}
    names = [n for n in TABLE_ORDER if n in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 6.0))
    ax = axes[0]
    for i, n in enumerate(names):
        r = rows[n]
        if n == "original":
            continue
        # each later method drawn smaller: methods at (nearly) one point show as nested markers, none hidden
        ax.scatter(r["forget_accuracy"], r["retain_accuracy"], s=max(230 - 20 * i, 25), color=f"C{i % 10}", edgecolors="k",
                   linewidths=0.5, label=n, zorder=2)
    o = rows["original"]
    ax.scatter(o["forget_accuracy"], o["retain_accuracy"], marker="*", s=260, color="gold", edgecolors="k",
               label="original", zorder=3)
    ax.set_xlabel("held-out forget accuracy (%) — lower is better")
    ax.set_ylabel("retain accuracy, D_r (%) — higher is better")
    ax.set_title(f"forget {TEST_CLASS}: D_f {t['sizes']['forget']}, D_r {t['sizes']['retain']}, "
                 f"held-out forget {t['sizes']['test_forget']}", fontsize=9)
    ax.grid(alpha=0.3)
    # legends below the panels: inside, they hid points (the original's star among them)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax = axes[1]
    timed = [n for n in names if rows[n].get("wall_seconds") is not None]
    ax.barh(timed, [rows[n]["wall_seconds"] for n in timed], color="tab:gray")
    for y, n in enumerate(timed):
        ax.text(rows[n]["wall_seconds"], y, f" {rows[n]['wall_seconds']:.1f} s", va="center", fontsize=7)
    ax.invert_yaxis()
    rounds = max(len(rows[n].get("wall_seconds_runs") or [1]) for n in timed) if timed else 1
    ax.set_xlabel(f"wall time of the unlearning loop / Retrain's training (s, median of {rounds})")
    ax.set_title("time (linear axis from 0)", fontsize=9)
    ax = axes[2]
    for n, curve in t["curves"].items():
        ax.plot([p["step"] for p in curve], [p["score"] for p in curve], label=n, color=f"C{names.index(n) % 10}")
    ax.axhline(t["relearn_target"], ls="--", color="k", lw=1, label="half the original")
    ax.set_xlabel("relearn steps (D_f + D_r batches)")
    ax.set_ylabel("held-out forget accuracy (%)")
    ax.set_title("relearning", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax.grid(alpha=0.3)
    fig.suptitle("Unlearning on the shapes world (tiny CLIP): each method's setting chosen on square/star/ring", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
