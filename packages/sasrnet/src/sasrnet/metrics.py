"""Per-type accuracy in the paper's report keys, and the bar chart.

Per-type keys (A-Count ... AV-Temp) are accuracies over the questions of that type. The group
averages A-Avg, V-Avg and AV-Avg, and ``overall``, are accuracies over all questions of the group
(question-weighted, as the ST-AVQA evaluation script computes them), not means of the type columns.
Types without questions are reported as None. Values are percentages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcore.avqa.music_avqa import AVG_GROUPS, REPORT_KEYS


def type_accuracies(type_keys: Sequence[str], correct: Sequence[bool]) -> dict[str, float | None]:
    """Accuracy (%) per report key; other type keys (e.g. AVQA-Yang's "Which") get their own entry."""
    def acc(sel: list[bool]) -> float | None:
        return round(100.0 * sum(sel) / len(sel), 4) if sel else None

    by_type: dict[str, list[bool]] = {}
    for k, c in zip(type_keys, correct, strict=True):
        by_type.setdefault(k, []).append(bool(c))
    out: dict[str, float | None] = {}
    for key in REPORT_KEYS:
        if key in AVG_GROUPS:
            out[key] = acc([c for t in AVG_GROUPS[key] for c in by_type.get(t, [])])
        elif key == "overall":
            out[key] = acc([bool(c) for c in correct])
        else:
            out[key] = acc(by_type.get(key, []))
    for k in sorted(by_type):  # non-Music-AVQA types
        if k not in out:
            out[k] = acc(by_type[k])
    out["n_questions"] = len(correct)  # type: ignore[assignment]
    return out


def majority_answers(train: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The most frequent training answer of each question type, from (type_key, answer) pairs."""
    from collections import Counter

    by_type: dict[str, Counter] = {}
    for t, a in train:
        by_type.setdefault(t, Counter())[a] += 1
    return {t: c.most_common(1)[0][0] for t, c in sorted(by_type.items())}


def majority_answer_accuracy(majority: dict[str, str], questions: Sequence[tuple[str, str]]) -> dict[str, float | None]:
    """Chance level per report key: the accuracy (%) on (type_key, answer) pairs of always giving the
    type's most frequent training answer (:func:`majority_answers`): what a model reading neither the
    video nor the question's words can reach."""
    out = type_accuracies([t for t, _ in questions], [majority.get(t) == a for t, a in questions])
    out.pop("n_questions", None)
    return out


def plot_type_accuracies(results: dict[str, dict], path: str | Path, title: str = "Accuracy per question type",
                         spread: dict[str, tuple[dict, dict]] | None = None,
                         chance: dict[str, float | None] | None = None) -> Path:
    """Grouped bar chart: the nine question types, then ``overall`` after a gap (the group averages are in
    metrics.json, not among the types), one bar per model. ``spread[model] = (low, high)`` (per-key dicts,
    e.g. min and max over training seeds) draws an error bar from low to high; ``chance`` (per key, e.g.
    :func:`majority_answer_accuracy`) a black line across each group. Put the split and its size in ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in REPORT_KEYS if k not in AVG_GROUPS and any(r.get(k) is not None for r in results.values())]
    n = max(len(results), 1)
    width = 0.8 / n
    xpos = {k: i + (0.6 if k == "overall" else 0.0) for i, k in enumerate(keys)}  # a gap before overall
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.9), 4.2))
    for j, (name, r) in enumerate(results.items()):
        xs = [xpos[k] + (j - (n - 1) / 2) * width for k in keys]
        ys = [r.get(k) or 0.0 for k in keys]
        yerr = None
        if spread and name in spread:
            lo, hi = spread[name]
            yerr = [[y - (y if lo.get(k) is None else lo[k]) for y, k in zip(ys, keys, strict=True)],
                    [(y if hi.get(k) is None else hi[k]) - y for y, k in zip(ys, keys, strict=True)]]
        ax.bar(xs, ys, width, label=name, yerr=yerr, capsize=2 if yerr else 0, error_kw={"ecolor": "0.35", "lw": 0.8})
    if chance:
        for i, k in enumerate(keys):
            if chance.get(k) is not None:
                ax.hlines(chance[k], xpos[k] - 0.45, xpos[k] + 0.45, colors="black", linewidth=1.6, linestyles="--",
                          label="chance: the type's majority training answer" if i == 0 else None)
    if "overall" in xpos:
        ax.axvline(xpos["overall"] - 0.8, color="grey", lw=0.8, ls=":")
    ax.set_xticks([xpos[k] for k in keys], keys, rotation=45, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=min(n + bool(chance), 5), loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)  # atomic: a kill never leaves half a PNG
    return path
