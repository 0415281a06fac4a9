"""CLIPErase's default choices, each undone alone, on VALIDATION forget classes (never the benchmark's circle).

    uv run python -m benchmarks unlearn_defaults [--classes square,star,ring] [--seeds 0,1,2] [--clip-dir DIR]
                                                 [--quick --out DIR]

The benchmark `unlearn_shapes` forgets "circle"; the defaults of ``UnlearnConfig`` where they depart from the
paper (``towers="text"``: the image tower stays frozen; ``forget_text="mixed"``: half the forget pairs use a
class prompt) were chosen here, on other shapes, so that its verdict is not tuned on its own test. Rows: the
defaults; each of those choices undone alone; the paper's setting (``cliperase.config.PAPER_SETTING``: both
undone); one alternative that was tried (a retain batch of 64). For each forget class and seed (the seed moves
the batch order and the retrieval subsample) it reports zero-shot forget / retain / test accuracy and retain
image→text R@1 as differences from the original model (points), the retain classes that moved most, and the
unlearning wall time. Writes results/unlearn_defaults.json + .png.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._common import parse_args, png_path, write_result

NAME = "unlearn_defaults"
ROOT = Path(__file__).resolve().parent
KEYS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "retain_i2t_R@1")



def rows_to_run() -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides of the defaults) per row."""
    from cliperase.config import PAPER_SETTING

    return [
        ("defaults (text tower, mixed forget text)", {}),
        ("- text tower only (both towers)", {"towers": "both"}),
        ("- mixed forget text (captions)", {"forget_text": "caption"}),
        ("paper setting (both towers, captions)", dict(PAPER_SETTING)),
        ("defaults + retain batch 64", {"batch_size": 64}),
    ]


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    labels = [r["config"] for r in rows]
    for ax, key in zip(axes, ("retain_accuracy", "retain_i2t_R@1"), strict=True):
        for i, r in enumerate(rows):
            vals = [d[key] for d in r["runs"]]
            ax.scatter([i] * len(vals), vals, color="tab:blue", alpha=0.5, s=18)
            ax.scatter([i], [r["median_delta"][key]], color="k", marker="_", s=400)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"{key}: unlearned − original (points)")
        ax.set_title(f"{key} (dots: class × seed; bar: median)")
    fig.suptitle("CLIPErase default choices on validation forget classes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks unlearn_defaults`: the keys of its --config YAML."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks {NAME}", description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="square,star,ring", help="validation forget classes (never the benchmark's circle)")
    ap.add_argument("--seeds", default="0,1,2", help="unlearning seeds (batch order and retrieval subsample)")
    ap.add_argument("--clip-dir", type=Path, default=ROOT / "work" / "tiny_clip",
                    help="a finished `mm clip pretrain` run (benchmarks unlearn_shapes creates it)")
    ap.add_argument("--quick", action="store_true", help="random-weight mm-micro-clip, tiny data: a smoke test")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(build_parser(), argv)

    from cliperase.config import ForgetSpec, UnlearnConfig
    from cliperase.forget_sets import split_forget_retain
    from cliperase.methods import unlearn
    from cliperase.metrics import evaluate_split
    from cliperase.recipes.runner import load_data
    from mmcore.distributed import AcceleratorConfig, build_accelerator, seed_everything
    from mmcore.encoders.clip import load_clip
    from mmcore.errors import MMError

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if "circle" in classes and not args.quick:
        raise MMError("circle is the test class of unlearn_shapes; validate on other shapes")
    base = UnlearnConfig(model=str(args.clip_dir), dataset="shapes", accelerator=AcceleratorConfig(log_with="none"))
    if args.quick:
        base = dataclasses.replace(base, model="mm-micro-clip", n_train=120, n_test=40, eval_batch_size=64,
                                   retrieval_max_pairs=16, mia_max_samples=16, steps=2)
    elif not (args.clip_dir / "model.safetensors").is_file():
        raise MMError(f"{args.clip_dir}: no pretrained tiny CLIP; run `python -m benchmarks unlearn_shapes` first")
    base = dataclasses.replace(base, relearn=dataclasses.replace(base.relearn, enabled=False))
    acc = build_accelerator(base.accelerator)
    bundle = load_clip(base.model, None, device=str(acc.device))
    original = copy.deepcopy(bundle.model)
    t_start = time.perf_counter()

    splits = {}
    before: dict[tuple[str, int], dict[str, Any]] = {}
    for c in classes:
        cfg = dataclasses.replace(base, forget=ForgetSpec(classes=[c]))
        train, test = load_data(cfg, bundle.image_size)
        splits[c] = split_forget_retain(train, test, cfg.forget)
        for s in seeds:  # the seed picks the retrieval subsample: the original is measured on the same one
            b = evaluate_split(original, bundle, splits[c], dataclasses.replace(cfg, seed=s))
            before[c, s] = {**{k: b[k] for k in KEYS}, "per_class": b["per_class_accuracy"]["retain"]}

    rows: list[dict[str, Any]] = []
    for name, over in rows_to_run():
        row: dict[str, Any] = {"config": name, "settings": over, "runs": []}
        for c in classes:
            for s in seeds:
                cfg = dataclasses.replace(base, forget=ForgetSpec(classes=[c]), seed=s, **over)
                seed_everything(cfg.seed)
                bundle.model = copy.deepcopy(original)
                res = unlearn(bundle, splits[c], cfg, acc, desc=f"{name} / forget {c} / seed {s}")
                after = evaluate_split(res.model, bundle, splits[c], cfg)
                b = before[c, s]
                moved = {k: round(after["per_class_accuracy"]["retain"][k] - v, 2) for k, v in b["per_class"].items()}
                row["runs"].append({
                    "class": c, "seed": s, "forget_accuracy_after": round(after["forget_accuracy"], 3),
                    **{k: round(after[k] - b[k], 3) for k in KEYS},
                    "worst_retain_classes": dict(sorted(moved.items(), key=lambda kv: kv[1])[:2]),
                    "wall_seconds": round(res.train_seconds, 2),
                })
        runs = row["runs"]
        row["median_delta"] = {k: round(statistics.median(r[k] for r in runs), 3) for k in KEYS}
        row["mean_delta"] = {k: round(statistics.fmean(r[k] for r in runs), 3) for k in KEYS}
        row["max_forget_accuracy_after"] = max(r["forget_accuracy_after"] for r in runs)
        row["median_wall_seconds"] = round(statistics.median(r["wall_seconds"] for r in runs), 2)
        rows.append(row)
        print(f"{name}: median change {row['median_delta']}, mean {row['mean_delta']}", flush=True)

    result = {
        "quick": args.quick,
        "classes": classes,
        "seeds": seeds,
        "before": {f"{c}/seed{s}": {k: v[k] for k in KEYS} for (c, s), v in before.items()},
        "rows": rows,
        "benchmark_seconds": round(time.perf_counter() - t_start, 1),
        "notes": "Deltas in points (unlearned - original) per forget class and seed; median and mean over "
                 "classes x seeds. Every row runs the library defaults except the settings listed. The benchmark "
                 "unlearn_shapes (forget circle) is not used here.",
    }
    name = f"{NAME}_quick" if args.quick else NAME
    write_result(name, result, args.out)
    _plot(rows, png_path(name, args.out))
    return result


if __name__ == "__main__":
    main()
