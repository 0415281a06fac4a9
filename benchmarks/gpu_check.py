"""GPU check: throughput and peak memory of CLIPErase (ViT-B/32) and SaSR-Net (paper size), fp32 and bf16.

CLIPErase unlearning steps on a ViT-B/32-sized CLIP, SaSR-Net training steps and evaluation forwards, in fp32
and under bf16 autocast, on one GPU (plus a 2-process run where 2 GPUs are visible).

    uv run python -m benchmarks gpu_check [--device cuda|cpu] [--tiny] [--steps N] [--out DIR]

Running it on a lent GPU (one H100 / H200): in a synced checkout (``uv sync``) on the GPU machine, from the
repository root, run ``MM_NO_PROGRESS=1 uv run python -m benchmarks gpu_check --out "$OUT"`` (``$OUT``: any
folder that comes back; default benchmarks/results). It is sized to finish in a few minutes on one GPU (not yet
timed on one: 4 unlearning runs of ``--steps`` + ``--warmup`` + 1 steps, then 2 x 2 SaSR-Net measurements; on a
shared 2-core CPU the full sizes at batch 2, ``--steps 3 --warmup 0``, took 108 s); each section prints one
``gpu_check:`` line to stdout as it ends, so a remote run shows its progress, and the run writes gpu_check.json
(figures, settings, the CUDA device in ``gpu`` and ``machine.cuda``) and gpu_check.png. ``--device cuda``
without a visible GPU stops at once with a one-line error. ``--tiny --device cpu`` runs the same code at micro
sizes in well under a minute (the smoke test).

What is measured (each figure: the median of ``--steps`` >= 3 timed repeats after ``--warmup`` untimed ones):
- CLIPErase: open_clip ``ViT-B-32`` with random weights (``pretrained=None``; ``--tiny``: ``mm-micro-clip``)
  unlearning one shapes class (``mmcore.data.shapes.make_shapes`` at the model's image size) with
  :func:`cliperase.methods.unlearn`, the loop ``cliperase.unlearn`` and ``mm unlearn run`` use, under
  ``UnlearnConfig`` defaults except steps and batch sizes; once with the default towers (``text``: image tower
  frozen) and once with both towers trained (the paper's setting). A step's time is the wall time between two
  consecutive step ends (the loop reads the loss to a Python float every step, which synchronises the GPU), so
  it includes the loop's own input path: the eval transform of the step's in-memory images, done in this
  process; that part is also timed alone (``input_ms_per_step``). images/s = the step's forget + retain images
  (global batch) / median step time.
- SaSR-Net: ``sasrnet.build_model(sasrnet.model_config("sasrnet", "paper"))`` on synthetic ST-AVQA-shaped
  features (audio [B,10,128], visual [B,10,512,14,14], 14-word questions; ``--tiny``: size ``cpu-tiny`` on a
  [B,10,6,14,14] grid). A training step is the loop's: the pinned batch to the device, forward with the match
  loss's negatives (built by ``sasrnet.recipes.train.batch_with_negatives``: other videos' frames, the full
  negative pass), ``compute_loss``, ``accelerator.backward``, the fused Adam step, the loss read back. An
  evaluation forward: the batch without negatives to the device, ``model.eval()`` under ``no_grad``, argmax back
  on the host. The batches are built once (the loop builds them in DataLoader workers ahead of the step).
- Precision: accelerate's ``mixed_precision`` through ``AcceleratorConfig`` (what every run config exposes):
  ``fp32`` = "no" (torch's default matmul precision; the TF32 switches are recorded in ``gpu``), ``bf16`` =
  autocast to bfloat16 with fp32 weights and optimizer.
- Peak memory: ``torch.cuda.max_memory_allocated`` per measurement (reset before it); on the CPU the process's
  peak RSS, which only grows over the run (labelled ``memory_measure``).
- 2 processes (``--two-process auto``: when more than one GPU is visible): the CLIPErase measurement of the first
  ``--towers`` entry as a 2-process DDP run on one node, launched with ``torch.distributed.run`` (accelerate takes
  its process group from it); the global batch is the same as the 1-process run's, split over the processes.
  Otherwise the JSON records that it was skipped and why. ``--two-process on`` forces it (on the CPU: gloo).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_workloads import (
    PRECISIONS,
    clip_setup,
    cliperase_steps,
    gpu_info,
    sasrnet_measure,
    sasrnet_setup,
)

NAME = "gpu_check"
ROOT = Path(__file__).resolve().parents[1]
TOWERS = ("text", "both")
TIMEOUT_2P = 600  # seconds for the whole 2-process run


def say(msg: str) -> None:
    """One progress line on stdout (flushed: a remote run shows it as it happens)."""
    print(f"{NAME}: {msg}", flush=True)


def two_process(args: argparse.Namespace, device: str, reference: dict[str, Any] | None) -> dict[str, Any]:
    """The 2-process CLIPErase run (``torch.distributed.run``, one node), or why it was skipped."""
    import torch

    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if args.two_process == "off":
        return {"status": "skipped", "reason": "--two-process off"}
    if args.two_process == "auto" and gpus < 2:
        why = (f"{gpus} GPU visible (a 2-process run needs 2)" if device == "cuda"
               else "device cpu (auto runs it only with 2+ GPUs; --two-process on forces it)")
        return {"status": "skipped", "reason": why}
    towers, precision = args.towers[0], args.two_process_precision
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", f"benchmarks.{NAME}", "--device", device, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--clip-batch", str(args.clip_batch), "--seed", str(args.seed), "--towers", towers,
               "--two-process-precision", precision, "--worker-json", str(out), *(["--tiny"] if args.tiny else [])]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        if device == "cpu":
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_2P)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {TIMEOUT_2P} s", "command": cmd}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            return {"status": "failed", "reason": f"exit status {proc.returncode}", "command": cmd,
                    "stderr_tail": proc.stderr[-4000:], "stdout_tail": proc.stdout[-2000:]}
        res = json.loads(out.read_text())
    res = {"status": "ran", "launcher": "python -m torch.distributed.run --standalone --nproc_per_node 2",
           "wall_s_with_start": wall, **res}
    if reference is not None:
        res["one_process_images_per_s"] = reference["images_per_s"]
        res["speedup_vs_one_process_x"] = res["images_per_s"] / reference["images_per_s"]
    return res


def _worker(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """One process of the 2-process run (under torch.distributed.run); rank 0 writes ``--worker-json``."""
    from mmcore.io import write_json

    bundle, data = clip_setup(args.tiny, args.clip_batch, args.seed)
    res = cliperase_steps(bundle, data, towers=args.towers[0], precision=args.two_process_precision, device=device,
                          batch=args.clip_batch, steps=args.steps, warmup=args.warmup, seed=args.seed)
    res["peak_memory_note"] = "rank 0's"
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(args.worker_json, res)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return res


# ------------------------------------------------------------------------------------------ main


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [f"{r['workload']} {r['precision']}" for r in rows]
    colors = ["tab:blue" if r["precision"] == "fp32" else "tab:orange" for r in rows]
    for ax, key, label in ((axes[0], "throughput", "images or samples / s (median)"),
                           (axes[1], "peak_memory_mb", "peak memory (MB)")):
        vals = [r[key] for r in rows]
        ax.barh(names, vals, color=colors)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.0f}", va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.set_xlim(0, max(vals) * 1.25)
        ax.invert_yaxis()
    axes[1].set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _towers(text: str) -> list[str]:
    towers = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in towers if t not in TOWERS]
    if not towers or bad or len(set(towers)) != len(towers):
        raise argparse.ArgumentTypeError(f"a comma list of distinct towers among {', '.join(TOWERS)}; got {text!r}")
    return towers


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks gpu_check`: the keys of its --config YAML."""
    from benchmarks._common import RESULTS

    p = argparse.ArgumentParser(prog=f"benchmarks {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if a GPU is visible")
    p.add_argument("--tiny", action="store_true", help="micro models and sizes (mm-micro-clip, sasrnet cpu-tiny): "
                                                       "the CPU smoke test")
    p.add_argument("--steps", type=int, default=None, help="timed repeats per figure, >= 3 (default 20; --tiny 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed repeats before them (default 3; --tiny 1)")
    p.add_argument("--clip-batch", type=int, default=None,
                   help="forget and retain pairs per unlearning step, each (default UnlearnConfig().batch_size; "
                        "--tiny 8)")
    p.add_argument("--towers", type=_towers, default=list(TOWERS),
                   help="comma list of the towers unlearning trains: text (CLIPErase's default), both (the paper's)")
    p.add_argument("--sasr-batch", type=int, default=None, help="training batch (default TrainConfig().batch_size; "
                                                                "--tiny 4)")
    p.add_argument("--sasr-eval-batch", type=int, default=None,
                   help="evaluation batch (default TrainConfig().eval_batch_size; --tiny 8)")
    p.add_argument("--two-process", choices=("auto", "on", "off"), default="auto",
                   help="the 2-process CLIPErase run: auto = when 2+ GPUs are visible; on = always (CPU: gloo)")
    p.add_argument("--two-process-precision", choices=tuple(PRECISIONS), default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS), help="output directory (default benchmarks/results)")
    p.add_argument("--worker-json", type=Path, default=None, help=argparse.SUPPRESS)  # a 2-process run's process
    return p


def _no_gpu_message() -> str:
    import torch

    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return (f"--device cuda: no CUDA GPU is visible (torch.cuda.is_available() is False; torch {torch.__version__}, "
            f"{build}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}); "
            "run it on a GPU machine or pass --device cpu")


def resolve_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Fill the size-dependent defaults (full or ``--tiny``) into ``args`` and check them (``parser.error``)."""
    from cliperase.config import UnlearnConfig
    from sasrnet.config import TrainConfig

    defaults = {"steps": (3, 20), "warmup": (1, 3), "clip_batch": (8, UnlearnConfig().batch_size),
                "sasr_batch": (4, TrainConfig().batch_size), "sasr_eval_batch": (8, TrainConfig().eval_batch_size)}
    for key, (tiny, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    if args.steps < 3:
        parser.error(f"--steps must be at least 3 (each figure is a median of that many timed repeats); got {args.steps}")
    if args.warmup < 0 or min(args.clip_batch, args.sasr_batch, args.sasr_eval_batch) < 1:
        parser.error("--warmup must be >= 0 and the batch sizes >= 1")
    return args


def main(argv: list[str]) -> dict[str, Any]:
    import torch

    from benchmarks._common import parse_args

    parser = build_parser()
    args = parse_args(parser, argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(_no_gpu_message())
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    resolve_defaults(parser, args)

    # building an Accelerator turns deterministic algorithms on for CPU runs: leave the switch as found
    det = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if args.worker_json is not None:
            return _worker(args, device)
        return _run(args, device)
    finally:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(True)  # no later Accelerator of this process inherits our precision
        torch.use_deterministic_algorithms(det[0], warn_only=det[1])


def _run(args: argparse.Namespace, device: str) -> dict[str, Any]:
    from benchmarks._common import png_path, write_result

    sasr_batch, sasr_eval_batch = args.sasr_batch, args.sasr_eval_batch
    t_start = time.perf_counter()
    gpu = gpu_info(device)
    say(f"device {device}" + (f" ({gpu['name']}, {gpu['count']} visible, {gpu['total_memory_gb']} GiB)" if gpu else "")
        + f"; {'tiny' if args.tiny else 'full'} sizes, {args.steps} timed repeats after {args.warmup} warm-up")
    summary: dict[str, Any] = {"device": device, "gpu": gpu["name"] if gpu else None}
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}

    def add(key: str, workload: str, res: dict[str, Any], unit: str) -> None:
        p = res["precision"]
        summary[f"{key}_{p}_steps_per_s"] = res["steps_per_s"]
        summary[f"{key}_{p}_{unit}_per_s"] = res[f"{unit}_per_s"]
        summary[f"{key}_{p}_peak_memory_mb"] = res["peak_memory_mb"]
        rows.append({"workload": workload, "precision": p, "batch": res.get("images_per_step", res.get("batch")),
                     "throughput": res[f"{unit}_per_s"], "unit": f"{unit}/s", "steps_per_s": res["steps_per_s"],
                     "median_step_s": res["timing"]["median_s"], "peak_memory_mb": res["peak_memory_mb"]})
        details.setdefault(key, {})[p] = res
        say(f"{workload} {p}: {res['steps_per_s']:.2f} steps/s, {res[f'{unit}_per_s']:.1f} {unit}/s, "
            f"peak {res['peak_memory_mb']:.0f} MB (median of {res['timing']['repeats']})")

    t = time.perf_counter()
    bundle, data = clip_setup(args.tiny, args.clip_batch, args.seed)
    clip_name = "mm-micro-clip" if args.tiny else "ViT-B-32"
    say(f"CLIPErase set-up: {clip_name} (random init, "
        f"{sum(p.numel() for p in bundle.model.parameters()) / 1e6:.1f} M parameters), {len(data)} shapes records at "
        f"{bundle.image_size} px in {time.perf_counter() - t:.1f} s")
    first = True
    for towers in args.towers:
        for p in PRECISIONS:
            res = cliperase_steps(bundle, data, towers=towers, precision=p, device=device, batch=args.clip_batch,
                                  steps=args.steps, warmup=args.warmup, seed=args.seed, time_input=first)
            if first:
                summary["cliperase_input_ms_per_step"] = res["input_ms_per_step"]
                say(f"CLIPErase input path: {res['input_ms_per_step']:.1f} ms per step (eval transform of "
                    f"{res['images_per_step']} in-memory images, in the loop's process)")
            first = False
            add(f"cliperase_{towers}", f"CLIPErase {clip_name} ({towers} tower{'s' if towers == 'both' else ''})",
                res, "images")
        d = details[f"cliperase_{towers}"]
        summary[f"cliperase_{towers}_bf16_speedup_x"] = d["fp32"]["timing"]["median_s"] / d["bf16"]["timing"]["median_s"]
    del bundle, data

    t = time.perf_counter()
    mcfg, ds, shapes = sasrnet_setup(args.tiny, sasr_batch, sasr_eval_batch, args.seed)
    size = "cpu-tiny" if args.tiny else "paper"
    say(f"SaSR-Net set-up: size {size} (dim {mcfg.dim}, depth {mcfg.depth}), inputs audio [B,{','.join(map(str, shapes['audio']))}]"
        f" visual [B,{','.join(map(str, shapes['visual']))}] in {time.perf_counter() - t:.1f} s")
    unsupported: dict[str, str] = {}
    for p in PRECISIONS:
        try:
            res = sasrnet_measure(mcfg, ds, precision=p, device=device, train_batch=sasr_batch,
                                  eval_batch=sasr_eval_batch, steps=args.steps, warmup=args.warmup, seed=args.seed)
        except RuntimeError as e:
            # Some CPUs' oneDNN has no bf16 LSTM primitive (seen 2026-12-07: "could not create a primitive
            # descriptor for the LSTM forward propagation primitive"). On the CPU that is a fact about the
            # machine, recorded (the fp32 rows stand); on a GPU, or any other error, it is a failure.
            if device != "cpu" or p == "fp32" or "primitive descriptor" not in str(e):
                raise
            unsupported[f"sasrnet_{p}"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            say(f"SaSR-Net {p} unsupported on this CPU, left out: {unsupported[f'sasrnet_{p}']}")
            continue
        add("sasrnet_train", f"SaSR-Net ({size}) train step", res["train"], "samples")
        add("sasrnet_eval", f"SaSR-Net ({size}) eval forward", res["eval"], "samples")
    summary["unsupported"] = "; ".join(f"{k}: {v}" for k, v in unsupported.items()) or "none"
    for key in ("sasrnet_train", "sasrnet_eval"):
        d = details[key]
        summary[f"{key}_bf16_speedup_x"] = (d["fp32"]["timing"]["median_s"] / d["bf16"]["timing"]["median_s"]
                                            if "bf16" in d else None)
    del ds

    ref = details.get(f"cliperase_{args.towers[0]}", {}).get(args.two_process_precision)
    two = two_process(args, device, ref)
    details["two_process"] = two
    summary["two_process"] = two["status"]
    summary["two_process_images_per_s"] = two.get("images_per_s")
    if two["status"] == "ran":
        say(f"2-process run ({args.towers[0]} tower(s), {args.two_process_precision}): {two['steps_per_s']:.2f} steps/s, "
            f"{two['images_per_s']:.1f} images/s"
            + (f", {two['speedup_vs_one_process_x']:.2f}x one process" if "speedup_vs_one_process_x" in two else ""))
    else:
        say(f"2-process run {two['status']}: {two['reason']}"
            + (f"\n{two.get('stderr_tail', '')[-1500:]}" if two["status"] == "failed" else ""))
    summary["memory_measure"] = details["sasrnet_train"]["fp32"]["memory_measure"]
    summary["total_s"] = time.perf_counter() - t_start

    result = {
        "summary": summary,
        "table": rows,
        "gpu": gpu,
        "cliperase": {k[len("cliperase_"):]: v for k, v in details.items() if k.startswith("cliperase_")},
        "sasrnet": {"size": size, "model_config": dataclasses.asdict(mcfg), "input_shapes": shapes,
                    "train": details["sasrnet_train"], "eval": details["sasrnet_eval"]},
        "two_process": two,
        "unsupported": unsupported,  # workload_precision -> the error, where this CPU cannot run it
        "settings": {"device": device, "tiny": args.tiny, "steps": args.steps, "warmup": args.warmup,
                     "clip_model": clip_name, "clip_batch_each": args.clip_batch, "towers": args.towers,
                     "sasr_batch": sasr_batch, "sasr_eval_batch": sasr_eval_batch, "seed": args.seed,
                     "two_process": args.two_process, "two_process_precision": args.two_process_precision,
                     "precisions": PRECISIONS,
                     "timing": "median of --steps timed repeats after --warmup (CLIPErase: per-step wall time between "
                               "consecutive step ends of cliperase.methods.unlearn; SaSR-Net: _common.timed_median)"},
    }
    png = png_path(NAME, args.out)
    _plot(rows, png, f"gpu_check on {gpu['name'] if gpu else 'cpu'} ({'tiny' if args.tiny else 'full'} sizes; "
                     "blue fp32, orange bf16 autocast)")
    result["figure"] = png.name
    write_result(NAME, result, args.out)
    say(f"done in {summary['total_s']:.0f} s")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
