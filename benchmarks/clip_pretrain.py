"""Performance bar of `mm clip pretrain`: with defaults it must reach >= 95% zero-shot shape accuracy on
held-out synthetic images in <= 5 minutes wall on 2 CPU cores.

    uv run python -m benchmarks clip_pretrain [--out DIR] [--set key=value ...]

Runs the real recipe (:func:`mmcore.recipes.clip_pretrain.pretrain`, what the CLI calls) with its defaults and
writes benchmarks/results/clip_pretrain.json plus a PNG of held-out accuracy against wall time and
steps, read from the run's log.jsonl. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks._common import parse_args, png_path, write_result

TARGET_ACCURACY = 0.95
TARGET_SECONDS = 300.0


def _plot(evals: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    wall = [e["wall_seconds"] for e in evals]
    acc = [100 * e["zero_shot_accuracy"] for e in evals]
    steps = [e["step"] for e in evals]
    a.plot(wall, acc, marker="o")
    a.axvline(TARGET_SECONDS, color="grey", ls="--", lw=1)
    a.set_xlabel("wall seconds (incl. data generation)")
    b.plot(steps, acc, marker="o")
    b.set_xlabel("training step")
    for ax in (a, b):
        ax.axhline(100 * TARGET_ACCURACY, color="red", ls="--", lw=1)
        ax.set_ylabel("held-out zero-shot accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks clip_pretrain`: the keys of its --config YAML."""
    p = argparse.ArgumentParser(prog="python -m benchmarks clip_pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="config override key=value")
    p.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(build_parser(), argv)

    from mmcore.clip_train import ClipTrainConfig
    from mmcore.config import config_to_dict, parse_set_options, resolve_config
    from mmcore.recipes.clip_pretrain import pretrain

    cfg = resolve_config(ClipTrainConfig, None, parse_set_options(args.sets))
    with tempfile.TemporaryDirectory(prefix="mm-clip-bench-") as tmp:
        out = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        metrics = pretrain(cfg, out, overwrite=True)
        outer = time.perf_counter() - t0
        evals = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "eval"]
    acc, wall = float(metrics["zero_shot_accuracy"]), float(metrics["wall_seconds"])
    first_hit = next((e for e in evals if e["zero_shot_accuracy"] >= TARGET_ACCURACY), None)
    result = {
        "zero_shot_accuracy": acc,
        "wall_seconds": wall,
        "wall_seconds_incl_imports": round(outer, 3),
        "meets_bar": acc >= TARGET_ACCURACY and wall <= TARGET_SECONDS,
        "target": {"zero_shot_accuracy": TARGET_ACCURACY, "wall_seconds": TARGET_SECONDS},
        "first_eval_over_target": first_hit,
        "metrics": metrics,
        "curve": [{k: e[k] for k in ("step", "wall_seconds", "zero_shot_accuracy")} for e in evals],
        "config": config_to_dict(cfg),
    }
    print(f"zero-shot accuracy {100 * acc:.1f}% in {wall:.0f} s (bar: >= {100 * TARGET_ACCURACY:.0f}% in "
          f"<= {TARGET_SECONDS:.0f} s) -> {'PASS' if result['meets_bar'] else 'FAIL'}")
    if not args.no_write:
        write_result("clip_pretrain", result)
        if evals:
            _plot(evals, png_path("clip_pretrain"), f"mm clip pretrain ({metrics['model']}): "
                                                    f"{100 * acc:.1f}% in {wall:.0f} s")
    return result


if __name__ == "__main__":
    main()
