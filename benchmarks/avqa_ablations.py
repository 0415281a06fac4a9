"""Does SaSR-Net learn from the video? Ablations on the lit synthetic world, 3 training seeds each, with paired
bootstrap intervals against SaSR-Net's default and the test questions split by what they need.

    uv run python -m benchmarks avqa_ablations            # 400 clips, seeds 1,2,3 -> results/avqa_ablations.json + .png
    uv run python -m benchmarks avqa_ablations --quick    # smoke run (tiny), results/avqa_ablations_quick.json

Everything below was written before any run on the lit world. The world is ``mmcore.avqa.synth`` with
``frames="lit"``: an instrument's plate lights up in every frame during which it sounds. Each row is SaSR-Net's
CPU-benchmark recipe (sasrnet/configs/avqa/sasrnet-cpu-benchmark.yaml) with one change:

    sasrnet        the published module and loss: the reference row
    no-match       arch.w_match = 0: no match loss (and no negatives)
    coherent-neg   negatives = coherent: the match loss's negative is one other whole clip, frames in order,
                   instead of a frame of a random other video per segment
    gate           arch.sasr_gate: A'' = A + g_a (SaSR(A) - A), V'' likewise, g zero-initialised (starts as AVST)
    no-drop-path   arch.drop_path = 0
    lr-best        the learning rate chosen on validation (rule below)
    avst           AVST on the same recipe (no SaSR module)
    blind          the question-only model
and, with ``--static-reference``, ``sasrnet-static`` and ``avst-static``: the same two recipes on the static
world of the same seed (one frame repeated), which shows what the lit frames add.

Learning-rate rule: seed 1 is trained at lr 2.5e-4 and 1e-3 beside the default 5e-4 (the sasrnet row); the
candidate with the highest best-epoch validation accuracy wins (a tie keeps 5e-4) and is trained with every
seed; where 5e-4 wins, lr-best is the sasrnet row itself.

Reported per row: test accuracy (median over seeds, each seed kept), accuracy on the templates that need
audio / vision / both (``mmcore.avqa.synth.questions.template_needs``; pooled over seeds), the gap to the
sasrnet row on all questions and on the vision templates as seed-mean differences with a paired bootstrap 95 %
interval over the test questions, and the diagnostics of the best epoch's model (``sasrnet.diagnostics``,
medians over seeds). The visual temporal attention counts as "not flat" when its mean largest weight is at
least 1.5x the uniform 1/T (``temporal_max_v >= 0.15`` at T = 10).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import parse_args, publish
from benchmarks.avqa_synth import (
    _correct,
    _run_dir,
    _run_trainings,
    chance_levels,
    paired_bootstrap,
    per_template,
    pick_on_validation,
    train_config,
)

SASR = "sasrnet-cpu-benchmark.yaml"  # every row's recipe
ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sasrnet": ("sasrnet", SASR, {}),
    "no-match": ("sasrnet", SASR, {"arch": {"w_match": 0.0}}),
    "coherent-neg": ("sasrnet", SASR, {"negatives": "coherent"}),
    "gate": ("sasrnet", SASR, {"arch": {"sasr_gate": True}}),
    "no-drop-path": ("sasrnet", SASR, {"arch": {"drop_path": 0.0}}),
    "avst": ("avst", SASR, {}),
    "blind": ("blind", SASR, {}),
}
LR_DEFAULT, LR_CANDIDATES = 5e-4, (2.5e-4, 1e-3)
STATIC_ROWS = {"sasrnet-static": ROWS["sasrnet"], "avst-static": ROWS["avst"]}
QUICK = {"epochs": 1, "size": "cpu-tiny", "warmup_steps": 0, "batch_size": 8}
NOT_FLAT = 1.5  # x the uniform weight 1/T
DIAG_KEYS = ("temporal_entropy_v", "temporal_max_v", "temporal_entropy_a", "spatial_entropy", "cos_audio_stream_t0",
             "cos_audio_embed_t0", "norm_audio_stream", "norm_audio_embed", "grad_norm_audio_input",
             "grad_norm_visual_input", "match_acc_pos", "match_acc_coherent_neg", "gate_a", "gate_v")


def _lr_name(lr: float) -> str:
    return f"lr-{lr:g}"


def _world(data: Path, videos: int, seed: int, frames: str, reuse: bool) -> tuple[dict, dict, dict[str, float]]:
    from mmcore.avqa.feature_extraction import extract_features
    from mmcore.avqa.synth import synthesize
    from mmcore.io import read_json

    meta = data / "features" / "features.json"
    if reuse and meta.is_file() and read_json(meta).get("complete"):
        summary = read_json(data / "world.json")["summary"]
        if summary.get("frames", "static") != frames:
            raise SystemExit(f"{data}: a {summary.get('frames', 'static')!r} world, not {frames!r}; drop --reuse-data")
        return summary, read_json(meta), {}
    if data.exists():
        shutil.rmtree(data)
    t = time.perf_counter()
    summary = synthesize(data, videos, seed, frames=frames, progress=False)
    t1 = time.perf_counter()
    feats = extract_features(data / "videos", data / "features", progress=False)
    return summary, feats, {"synthesize_s": round(t1 - t, 2), "extract_features_s": round(time.perf_counter() - t1, 2)}


def _best_diagnostics(metrics: dict) -> dict[str, float]:
    """The diagnostics logged at the best epoch (the saved model's), {} for the question-only model."""
    for rec in metrics.get("history", []):
        if rec.get("epoch") == metrics.get("best_epoch"):
            return rec.get("diagnostics", {})
    return {}


def _need_accuracy(correct: list[list[bool]], templates: list[str], needs: dict[str, str]) -> dict[str, Any]:
    import numpy as np

    c = np.asarray(correct, dtype=float)
    out: dict[str, Any] = {}
    for need in ("audio", "vision", "both"):
        idx = [i for i, t in enumerate(templates) if needs.get(t) == need]
        out[need] = round(100.0 * float(c[:, idx].mean()), 2) if idx else None
        out[f"{need}_questions"] = len(idx)
    return out


def _subset(correct: list[list[bool]], idx: list[int]) -> list[list[bool]]:
    return [[row[i] for i in idx] for row in correct]


def summarise(rows: list[str], runs: dict, work: Path, seeds: list[int], needs: dict[str, str], n_boot: int,
              specs: dict[str, tuple[str, str, dict[str, Any]]]) -> tuple[dict[str, Any], dict, list[str]]:
    """Per row: accuracies, need-split accuracies, gaps to the sasrnet row with intervals (where it is among
    ``rows``), diagnostics; also each row's per-seed correctness and the questions' templates."""
    correct: dict[str, list[list[bool]]] = {}
    qids = templates = None
    out: dict[str, Any] = {}
    for row in rows:
        correct[row] = []
        per_seed = {}
        for s in seeds:
            m, secs = runs[(row, s)]
            ids, ok, tmpl = _correct(_run_dir(work, row, s))
            if qids is None:
                qids, templates = ids, tmpl
            elif ids != qids:
                raise RuntimeError(f"{row} seed {s}: test predictions are not over the same questions")
            correct[row].append(ok)
            per_seed[s] = {"overall": m["test"]["overall"], "val_overall_best": (m["val"] or {}).get("overall"),
                           "best_epoch": m["best_epoch"], "train_time_s": m["train_time_s"], "wall_s": secs,
                           "diagnostics": _best_diagnostics(m),
                           "diagnostics_per_epoch": [r.get("diagnostics", {}) for r in m["history"]]}
        diag = {k: round(statistics.median(v), 4) for k in DIAG_KEYS
                if (v := [p["diagnostics"][k] for p in per_seed.values() if k in p["diagnostics"]])}
        out[row] = {"model": specs[row][0], "changes": specs[row][2] or None,
                    "overall": round(statistics.median(p["overall"] for p in per_seed.values()), 3),
                    "overall_per_seed": {s: p["overall"] for s, p in per_seed.items()},
                    "by_need": _need_accuracy(correct[row], templates, needs),
                    "diagnostics": diag,
                    "visual_attention_not_flat": (diag["temporal_max_v"] >= NOT_FLAT / 10) if diag else None,
                    "seeds": per_seed}
    vision = [i for i, t in enumerate(templates) if needs.get(t) == "vision"]
    for row in rows:
        if row != "sasrnet" and "sasrnet" in correct and vision:
            out[row]["minus_sasrnet"] = paired_bootstrap(correct[row], correct["sasrnet"], n_boot)
            out[row]["minus_sasrnet_vision"] = paired_bootstrap(_subset(correct[row], vision),
                                                                _subset(correct["sasrnet"], vision), n_boot)
        if row != "blind" and "blind" in correct and vision:
            out[row]["minus_blind_vision"] = paired_bootstrap(_subset(correct[row], vision),
                                                              _subset(correct["blind"], vision), n_boot)
    return out, correct, templates


def plot_result(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = list(rows)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    x = range(len(names))
    for off, key, label in ((-0.27, "overall", "all questions"), (0.0, "vision", "templates needing vision"),
                            (0.27, "audio", "templates needing audio")):
        vals = [rows[n]["overall"] if key == "overall" else rows[n]["by_need"][key] or 0 for n in names]
        ax.bar([i + off for i in x], vals, width=0.27, label=label)
    ax.set_xticks(list(x), names, rotation=35, ha="right")
    ax.set_ylim(30, None)  # the differences are a few points: the axis starts at 30 %
    ax.set_ylabel("test accuracy (%), median over seeds (by need: pooled); axis from 30")
    ax.set_title(f"lit synthetic world, {result['settings']['videos']} clips, seeds {result['settings']['train_seeds']}")
    ax.legend(fontsize=8)
    for n in names:
        curve = [statistics.median(v) for ep in zip(*[s["diagnostics_per_epoch"] for s in rows[n]["seeds"].values()],
                                                     strict=True)
                 if (v := [d["temporal_max_v"] for d in ep if "temporal_max_v" in d])]
        if curve:
            ax2.plot(range(len(curve)), curve, marker=".", label=n)
    ax2.axhline(0.1, color="grey", ls=":", label="uniform (1/T)")
    ax2.axhline(NOT_FLAT / 10, color="grey", ls="--", label="'not flat' threshold")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("visual temporal attention: mean largest weight")
    ax2.set_title("is the visual temporal attention flat? (median over seeds)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks avqa_ablations`: the keys of its --config YAML."""
    p = argparse.ArgumentParser(prog="python -m benchmarks avqa_ablations", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 24 videos, 1 epoch, tiny models, one seed")
    p.add_argument("--videos", type=int, default=400, help="synthetic clips in the world")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic world")
    p.add_argument("--train-seeds", default="1,2,3", help="training seeds, comma-separated (the first runs the lr sweep)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows, comma-separated, of {', '.join(ROWS)} (lr-best is "
                                                          "added by --lr-sweep)")
    p.add_argument("--lr-sweep", action=argparse.BooleanOptionalAction, default=True, help="the lr-best row")
    p.add_argument("--static-reference", action=argparse.BooleanOptionalAction, default=True,
                   help="also train sasrnet and avst on the static world of the same seed")
    p.add_argument("--bootstrap", type=int, default=2000, help="resamples of the paired bootstrap intervals")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per training (0: torch's default)")
    p.add_argument("--jobs", type=int, default=2, help="trainings run at once, each in its own process")
    p.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader workers per training (results do not depend on it); 0: the trainings already "
                        "fill the cores, and workers spawned per epoch cost seconds each at this size")
    p.add_argument("--work", type=Path, default=None, help="keep data and runs here (default: a temp dir)")
    p.add_argument("--reuse-data", action="store_true", help="with --work: keep WORK/data(-static) if complete")
    p.add_argument("--reuse-runs", action="store_true", help="with --work: read back finished trainings")
    p.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    p.add_argument("--no-write", action="store_true", help="print the result instead of writing it")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = build_parser()
    args = parse_args(p, argv)
    overrides = {**(QUICK if args.quick else {}), "num_workers": args.num_workers}
    if args.quick:
        args.videos = 24
    name = "avqa_ablations_quick" if args.quick else "avqa_ablations"
    try:
        seeds = [int(x) for x in args.train_seeds.split(",") if x.strip()]
    except ValueError:
        p.error(f"--train-seeds must be comma-separated integers, got {args.train_seeds!r}")
    rows = [r for r in args.rows.split(",") if r]
    if not seeds or not rows or any(r not in ROWS for r in rows) or "sasrnet" not in rows:
        p.error(f"--rows takes rows of {', '.join(ROWS)} and must include sasrnet; --train-seeds at least one seed")

    import torch
    from mmcore.avqa.synth.questions import template_needs

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MM_NO_PROGRESS", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="avqa-ablations-"))
    t0 = time.perf_counter()
    specs = {**ROWS, **{_lr_name(lr): ("sasrnet", SASR, {"lr": lr}) for lr in LR_CANDIDATES}, **STATIC_ROWS}
    try:
        summary, feats, timings = _world(work / "data", args.videos, args.seed, "lit", args.reuse_data)
        data, static_data = work / "data", work / "data-static"
        if args.static_reference:
            _, _, s_timings = _world(static_data, args.videos, args.seed, "static", args.reuse_data)
            timings |= {f"static_{k}": v for k, v in s_timings.items()}
        # phase 1: every row and seed, and the lr sweep's seed-1 runs, side by side
        sweep = [(_lr_name(lr), seeds[0]) for lr in LR_CANDIDATES] if args.lr_sweep else []
        runs = _run_trainings([(r, s) for s in seeds for r in rows] + sweep, overrides, data, work, args.jobs,
                              args.threads, args.reuse_runs, specs)
        lr_choice, phase2 = None, []
        if args.lr_sweep:
            val = {LR_DEFAULT: runs[("sasrnet", seeds[0])][0]["val"]["overall"],
                   **{lr: runs[(_lr_name(lr), seeds[0])][0]["val"]["overall"] for lr in LR_CANDIDATES}}
            best = pick_on_validation(val, LR_DEFAULT)
            lr_choice = {"validation_overall_seed1": {f"{k:g}": v for k, v in val.items()}, "chosen": best}
            specs["lr-best"] = specs["sasrnet"] if best == LR_DEFAULT else specs[_lr_name(best)]
            for s in seeds:
                src = "sasrnet" if best == LR_DEFAULT else (_lr_name(best) if s == seeds[0] else None)
                if src is None:
                    phase2.append(("lr-best", s))
                    continue
                runs[("lr-best", s)] = runs[(src, s)]
                if not _run_dir(work, "lr-best", s).exists():
                    shutil.copytree(_run_dir(work, src, s), _run_dir(work, "lr-best", s))
            rows.append("lr-best")
        # phase 2: the chosen lr's other seeds and the static world's rows
        runs |= _run_trainings(phase2, overrides, data, work, args.jobs, args.threads, args.reuse_runs, specs)
        s_runs = (_run_trainings([(r, s) for s in seeds for r in STATIC_ROWS], overrides, static_data, work,
                                 args.jobs, args.threads, args.reuse_runs, specs) if args.static_reference else {})
        needs = template_needs("lit")
        table, correct, templates = summarise(rows, runs, work, seeds, needs, args.bootstrap, specs)
        type_of = {}
        for x in (_run_dir(work, "sasrnet", seeds[0]) / "test_predictions.jsonl").read_text().splitlines():
            r = json.loads(x)
            type_of[r["template"]] = r["type"]
        templates_table = [{**row, "needs": needs.get(row["template"])}
                           for row in per_template(correct, templates, type_of)]
        static: dict[str, Any] = {}
        if args.static_reference:
            static = summarise(list(STATIC_ROWS), s_runs, work, seeds, template_needs("static"), args.bootstrap,
                               specs)[0]
        cfg = train_config("sasrnet", overrides, specs)
        result = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "recipe": {k: getattr(cfg, k) for k in ("size", "epochs", "batch_size", "lr", "step_size", "gamma",
                                                     "warmup_steps", "grad_clip", "questions_per_video")},
            "data": {"questions_per_split": summary["questions_per_split"], "frames": summary.get("frames"),
                     "visual_encoder": feats["visual_encoder"], "audio_encoder": feats["audio_encoder"]},
            "template_needs": needs,
            "lr_choice": lr_choice,
            "rows": table,
            "per_template": templates_table,
            "static_world": static,
            "chance": chance_levels(data),
            "timings": {**timings, "total_minutes": round((time.perf_counter() - t0) / 60, 2)},
            "summary": {
                "sasrnet_overall": table["sasrnet"]["overall"],
                "avst_minus_sasrnet": table["avst"]["minus_sasrnet"]["gap"] if "avst" in table else None,
                "rows_with_visual_attention_not_flat": ",".join(r for r, v in table.items()
                                                                if v["visual_attention_not_flat"]) or "none",
                "rows_above_sasrnet_on_vision_templates": ",".join(
                    r for r, v in table.items() if "minus_sasrnet_vision" in v
                    and v["minus_sasrnet_vision"]["ci95"][0] > 0) or "none",
            },
            "note": "accuracies in % of the test questions; 'overall' is the median over training seeds, by_need "
                    "pools the seeds; gaps are seed-mean differences with paired bootstrap 95 % intervals over the "
                    "test questions; diagnostics are of the best epoch's model, medians over seeds "
                    "(sasrnet.diagnostics); static_world rows ran on the static world (its own test questions)",
        }
        publish(name, result, args.out, args.no_write, plot_result)
        print(json.dumps(result["summary"]), flush=True)
        return result
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
