"""CLIPErase's defaults vs its retain-preserving variant, one change at a time, on VALIDATION forget classes.

    uv run python -m benchmarks unlearn_defaults [--classes square,star] [--clip-dir DIR] [--quick --out DIR]

The benchmark `unlearn_shapes` forgets "circle"; the settings here were compared on other shapes, so that its
verdict is not tuned on its own test. Starting from the defaults of ``UnlearnConfig`` (batch statistics in
BatchNorm, plain-mean FM, constant lr, 50 steps of 32 forget + 32 retain pairs) it adds one change at a time,
ending at ``cliperase.config.RETAIN_PRESERVING``, then undoes each change of that variant alone
(leave-one-out), and reports for each forget
class the zero-shot forget / retain / test accuracy and the retain image→text R@1 as differences from the
original model (points), plus the unlearning wall time. Writes results/unlearn_defaults.json + .png.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

from benchmarks._common import png_path, write_result

NAME = "unlearn_defaults"
ROOT = Path(__file__).resolve().parent
KEYS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "retain_i2t_R@1")

# Cumulative: each row keeps the previous rows' changes.
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {"freeze_norm_stats": False, "fm_margin": None, "lr_schedule": "constant",
                            "steps": 50, "forget_batch_size": 32, "batch_size": 32}),
    ("+ frozen BatchNorm statistics", {"freeze_norm_stats": True}),
    ("+ hinge FM at 0", {"fm_margin": 0.0}),
    ("+ cosine lr", {"lr_schedule": "cosine"}),
    ("+ 45 steps of 8 forget / 64 retain (= RETAIN_PRESERVING)", {"steps": 45, "forget_batch_size": 8, "batch_size": 64}),
]

# Leave-one-out from RETAIN_PRESERVING: each change undone alone (the cumulative path above depends on
# the order: frozen BatchNorm statistics alone hurt at first, before the hinge FM).
LEAVE_ONE_OUT: list[tuple[str, dict[str, Any]]] = [
    ("RETAIN_PRESERVING - frozen BatchNorm statistics", {"freeze_norm_stats": False}),
    ("RETAIN_PRESERVING - hinge FM (plain mean)", {"fm_margin": None}),
    ("RETAIN_PRESERVING - cosine lr (constant)", {"lr_schedule": "constant"}),
    ("RETAIN_PRESERVING - batch split (50 steps of 32 / 32)", {"steps": 50, "forget_batch_size": 32, "batch_size": 32}),
]


def _plot(rows: list[dict[str, Any]], classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = [r["config"] for r in rows]
    x = range(len(rows))
    for ax, key in zip(axes, ("retain_accuracy", "retain_i2t_R@1"), strict=True):
        w = 0.8 / len(classes)
        for j, c in enumerate(classes):
            ax.bar([i + j * w for i in x], [r["delta"][c][key] for r in rows], width=w, label=f"forget {c}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks([i + 0.4 - w / 2 for i in x], labels, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(f"{key}: unlearned − original (points)")
        ax.legend(fontsize=8)
    fig.suptitle("CLIPErase defaults → RETAIN_PRESERVING, one change at a time, on validation forget classes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks {NAME}", description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="square,star", help="validation forget classes (never the benchmark's circle)")
    ap.add_argument("--clip-dir", type=Path, default=ROOT / "work" / "tiny_clip",
                    help="a finished `mm clip pretrain` run (benchmarks unlearn_shapes creates it)")
    ap.add_argument("--quick", action="store_true", help="random-weight mm-micro-clip, tiny data: a smoke test")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)

    from cliperase.config import ForgetSpec, UnlearnConfig
    from cliperase.forget_sets import split_forget_retain
    from cliperase.metrics import evaluate_split
    from cliperase.runner import load_data
    from cliperase.trainer import unlearn
    from mmcore.distributed import AcceleratorConfig, build_accelerator, seed_everything
    from mmcore.encoders.clip import load_clip
    from mmcore.errors import MMError

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if "circle" in classes and not args.quick:
        raise MMError("circle is the test class of unlearn_shapes; validate on other shapes")
    base = UnlearnConfig(model=str(args.clip_dir), dataset="shapes", accelerator=AcceleratorConfig(log_with="none"))
    if args.quick:
        base = dataclasses.replace(base, model="mm-micro-clip", n_train=120, n_test=40, eval_batch_size=64,
                                   retrieval_max_pairs=16, mia_max_samples=16)
    elif not (args.clip_dir / "model.safetensors").is_file():
        raise MMError(f"{args.clip_dir}: no pretrained tiny CLIP; run `python -m benchmarks unlearn_shapes` first")
    base = dataclasses.replace(base, relearn=dataclasses.replace(base.relearn, enabled=False))
    acc = build_accelerator(base.accelerator)
    bundle = load_clip(base.model, None, device=str(acc.device))
    original = copy.deepcopy(bundle.model)
    t_start = time.perf_counter()

    rows: list[dict[str, Any]] = []
    over: dict[str, Any] = {}
    before: dict[str, dict[str, float]] = {}
    splits = {}
    for c in classes:
        cfg = dataclasses.replace(base, forget=ForgetSpec(classes=[c]))
        train, test = load_data(cfg, bundle.image_size)
        splits[c] = split_forget_retain(train, test, cfg.forget)
        before[c] = {k: evaluate_split(original, bundle, splits[c], cfg)[k] for k in KEYS}
    current: dict[str, Any] = {}
    for _, change in STEPS:
        current.update(change)
    plan = [(name, change, True) for name, change in STEPS] + [(name, change, False) for name, change in LEAVE_ONE_OUT]
    for name, change, cumulative in plan:
        over = {**(over if cumulative else current), **change, **({"steps": 2} if args.quick else {})}
        row: dict[str, Any] = {"config": name, "kind": "cumulative" if cumulative else "leave-one-out",
                               "settings": dict(over), "after": {}, "delta": {}, "wall_seconds": {}}
        for c in classes:
            cfg = dataclasses.replace(base, forget=ForgetSpec(classes=[c]), **over)
            seed_everything(cfg.seed)
            bundle.model = copy.deepcopy(original)
            res = unlearn(bundle, splits[c], cfg, acc, desc=f"{name} / forget {c}")
            after = evaluate_split(res.model, bundle, splits[c], cfg)
            row["after"][c] = {k: after[k] for k in KEYS}
            row["delta"][c] = {k: round(after[k] - before[c][k], 3) for k in KEYS}
            row["wall_seconds"][c] = round(res.train_seconds, 2)
        row["mean_delta"] = {k: round(sum(row["delta"][c][k] for c in classes) / len(classes), 3) for k in KEYS}
        rows.append(row)
        print(f"{name}: mean change {row['mean_delta']}", flush=True)

    result = {
        "quick": args.quick,
        "classes": classes,
        "before": before,
        "rows": rows,
        "benchmark_seconds": round(time.perf_counter() - t_start, 1),
        "notes": "Rows of kind cumulative add one change each; leave-one-out rows undo one change of RETAIN_PRESERVING; accuracies/recalls in percent, deltas in points "
                 "(unlearned - original). The benchmark unlearn_shapes (forget circle) is not used here.",
    }
    name = f"{NAME}_quick" if args.quick else NAME
    write_result(name, result, args.out)
    _plot(rows, classes, png_path(name, args.out))
    return result


if __name__ == "__main__":
    main()
