"""Diffusion evaluation on the offline default: does an unlearned tiny CLIP stop a text-to-image model
from drawing the forgotten shape ("circle") while it keeps drawing the others?

    uv run python -m benchmarks diffusion_shapes [--quick] [--clip-dir DIR] [--work DIR] [--fresh]

1. The tiny CLIP: reused from ``--clip-dir`` (shared with ``unlearn_shapes``) or pretrained there.
2. `mm diffusion pretrain` with its defaults on that CLIP (``--quick``: the ``demo`` preset), timed.
3. `mm unlearn run` with the CLIPErase defaults forgetting "circle" (``cliperase.recipes.runner.run_unlearning``), and
   again with the paper's setting ``cliperase.config.PAPER_SETTING`` (both encoders trained; reported next to
   the bar, not part of it).
4. `mm unlearn diffusion-eval` defaults: forget prompts about circles, one retain prompt per other shape.
5. The same two settings forgetting the validation shape ``--validation-class`` (square), on which the defaults
   were chosen (see benchmarks/unlearn_defaults.py).
The bar of issue 4 is checked; results go to ``benchmarks/results/diffusion_shapes.json`` (+ ``.png``, the grid).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks._common import parse_args, png_path, write_result

NAME = "diffusion_shapes"
ROOT = Path(__file__).resolve().parent
FORGET = "circle"


def _forget_prompts(forget: str) -> list[str]:
    return [f"a {forget}", f"a photo of a {forget}", f"a red {forget}", f"a blue {forget}"]


FORGET_PROMPTS = _forget_prompts(FORGET)


def _retain_prompts(shapes: list[str], forget: str = FORGET) -> list[str]:
    return [f"a {s}" for s in shapes if s != forget] + [f"a photo of a {s}" for s in shapes if s != forget]


def _diffusion(clip_dir: Path, out: Path, quick: bool, fresh: bool, preset: str | None = None) -> dict[str, Any]:
    """The `mm diffusion pretrain` pipeline on ``clip_dir`` in ``out`` (reused when done): its ``preset``
    (None: "demo" with ``quick``, else "default")."""
    from cliperase.recipes.diffusion_pretrain import PRESETS, DiffusionPretrainConfig, pretrain_diffusion
    from mmcore.config import resolve_config
    from mmcore.io import read_json

    if not fresh and (out / "model_index.json").is_file() and (out / "metrics.json").is_file():
        print(f"reusing the diffusion pipeline in {out}")
        return read_json(out / "metrics.json")
    cfg = resolve_config(DiffusionPretrainConfig, None, {**PRESETS[preset or ("demo" if quick else "default")],
                                                     "clip": str(clip_dir)})
    resume = not fresh and (out / "checkpoint" / "state.json").is_file()
    print(f"training the diffusion pipeline into {out} ({cfg.steps} steps)")
    return pretrain_diffusion(cfg, out, overwrite=not resume, resume=resume)


def _unlearned(clip_dir: Path, out: Path, quick: bool, fresh: bool, overrides: dict[str, Any] | None = None,
               forget: str = FORGET) -> dict[str, Any]:
    from cliperase.config import ForgetSpec, UnlearnConfig
    from cliperase.recipes.runner import run_unlearning
    from mmcore.io import read_json

    if not fresh and (out / "model.safetensors").is_file() and (out / "metrics.json").is_file():
        print(f"reusing the unlearned CLIP in {out}")
        return read_json(out / "metrics.json")
    # CLIPErase with the library defaults; relearn probing is irrelevant here.
    cfg = UnlearnConfig(model=str(clip_dir), dataset="shapes", forget=ForgetSpec(classes=[forget]), **(overrides or {}))
    cfg = dataclasses.replace(cfg, relearn=dataclasses.replace(cfg.relearn, enabled=False))
    if quick:
        cfg = dataclasses.replace(cfg, eval_max_samples=1000, retrieval_max_pairs=200)
    return run_unlearning(cfg, out, overwrite=True)


def _checks(m: dict[str, Any]) -> dict[str, Any]:
    shifts = {c: d["shift"] for c, d in m["per_concept"].items() if d["split"] == "retain"}
    checks = {
        "forget_detection_before_ge_70": {"value": m["forget_detection_before"], "pass": m["forget_detection_before"] >= 0.70},
        "forget_detection_after_le_10": {"value": m["forget_detection_after"], "pass": m["forget_detection_after"] <= 0.10},
        "each_retained_shape_moves_le_10_points": {"value": shifts, "pass": all(abs(v) <= 0.10 for v in shifts.values())},
    }
    checks["all_pass"] = all(v["pass"] for v in checks.values())
    return checks


def _summary(unl: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    return {
        "unlearning": {k: {"before": unl["before"].get(k), "after": unl["after"].get(k)}
                       for k in ("forget_accuracy", "retain_accuracy", "test_accuracy")},
        "forget_detection": {"before": m["forget_detection_before"], "after": m["forget_detection_after"]},
        "retain_detection": {"before": m["retain_detection_before"], "after": m["retain_detection_after"]},
        "would_pass_bar": _checks(m)["all_pass"],
    }


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks diffusion_shapes`: the keys of its --config YAML."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks {NAME}", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="demo-size diffusion model and eval: a smoke test, not the bar")
    ap.add_argument("--clip-dir", type=Path, default=None, help="pretrained tiny CLIP (reused, or created here)")
    ap.add_argument("--work", type=Path, default=ROOT / "work" / NAME, help="pipeline / unlearned model / eval dirs")
    ap.add_argument("--fresh", action="store_true", help="retrain the diffusion model and redo the unlearning")
    ap.add_argument("--n-per-prompt", type=int, default=0, help="images per prompt and encoder (0: 25, quick 6)")
    ap.add_argument("--validation-class", default="square", help="second forget shape, on which the defaults were chosen")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(build_parser(), argv)

    from cliperase.recipes.diffusion_eval import DiffusionEvalConfig, diffusion_eval

    from benchmarks.unlearn_shapes import _pretrained_clip

    t0 = time.perf_counter()
    clip_dir = args.clip_dir or ROOT / "work" / ("tiny_clip_quick" if args.quick else "tiny_clip")
    work = args.work / ("quick" if args.quick else "full")
    pre = _pretrained_clip(clip_dir, args.quick)
    t = time.perf_counter()
    diff = _diffusion(clip_dir, work / "pipeline", args.quick, args.fresh)
    diffusion_wall = time.perf_counter() - t
    unl = _unlearned(clip_dir, work / "unlearned", args.quick, args.fresh)

    from mmcore.io import read_json

    shapes = read_json(work / "pipeline" / "config.json")["shapes"]
    val = args.validation_class
    if val not in shapes or val == FORGET:
        raise SystemExit(f"--validation-class must be one of the pipeline's other shapes {shapes}, not {val!r}")
    n = args.n_per_prompt or (6 if args.quick else 25)
    cfg = DiffusionEvalConfig(original=str(clip_dir), unlearned=str(work / "unlearned"), pipeline=str(work / "pipeline"),
                              forget_prompts=FORGET_PROMPTS, retain_prompts=_retain_prompts(shapes), n_per_prompt=n)
    m = diffusion_eval(cfg, work / "eval", overwrite=True)
    checks = _checks(m)
    # The paper's setting (cliperase.config.PAPER_SETTING), same seeds; then both on the validation shape.
    from cliperase.config import PAPER_SETTING

    unl_paper = _unlearned(clip_dir, work / "unlearned_paper_setting", args.quick, args.fresh, PAPER_SETTING)
    m_paper = diffusion_eval(dataclasses.replace(cfg, unlearned=str(work / "unlearned_paper_setting")),
                             work / "eval_paper_setting", overwrite=True)
    validation: dict[str, Any] = {"forget": val}
    for tag, over in (("defaults", {}), ("paper_setting", PAPER_SETTING)):
        u = _unlearned(clip_dir, work / f"validation_{tag}", args.quick, args.fresh, over, forget=val)
        mv = diffusion_eval(dataclasses.replace(cfg, unlearned=str(work / f"validation_{tag}"),
                                                forget_prompts=_forget_prompts(val), retain_prompts=_retain_prompts(shapes, val)),
                            work / f"eval_validation_{tag}", overwrite=True)
        validation[tag] = _summary(u, mv)
    result = {
        "quick": args.quick,
        "clip_dir": str(clip_dir),
        "clip_pretrain": {k: pre.get(k) for k in ("zero_shot_accuracy", "steps", "train_seconds", "wall_seconds")},
        "diffusion_pretrain": {**{k: diff.get(k) for k in ("unet_parameters", "steps_done", "stopped_early",
                                                              "train_seconds", "total_seconds", "detector_val_acc",
                                                              "check_detection", "check_detection_mean")},
                               "wall_seconds_this_run": round(diffusion_wall, 1)},
        "unlearning": {"forget_accuracy": {"before": unl["before"].get("forget_accuracy"), "after": unl["after"].get("forget_accuracy")},
                       "retain_accuracy": {"before": unl["before"].get("retain_accuracy"), "after": unl["after"].get("retain_accuracy")},
                       "wall_seconds": unl.get("wall_seconds")},
        "eval_config": cfg,
        "metrics": m,
        "bar": checks,
        "paper_setting": {"overrides": PAPER_SETTING, **_summary(unl_paper, m_paper)},
        "validation": validation,
        "benchmark_seconds": round(time.perf_counter() - t0, 1),
        "notes": "Detection = fraction of generated images whose detector top-1 (a CNN trained on the diffusion "
                 "rendering with augmentation and an 'other' class) is the prompt's shape. Same seeds for both encoders. "
                 "The <= 20 min bar is diffusion_pretrain.total_seconds (detector + UNet + sanity check).",
    }
    write_result(NAME, result)
    shutil.copyfile(work / "eval" / "grid.png", png_path(NAME))
    print("bar:", {k: v["pass"] if isinstance(v, dict) else v for k, v in checks.items()})
    return result


if __name__ == "__main__":
    main()
