"""Hardware efficiency: achieved FLOP/s of training steps against a matmul peak measured in-process.

    uv run python -m benchmarks hw_efficiency [--quick] [--out DIR]

Models:
- the tiny CLIP (``mm-tiny-clip``, random init) training step as ``mmcore.clip_train.train_clip`` does
  it: forward on a batch of shapes images + captions, ``clip_loss`` (multi-positive), backward, AdamW
  step (batch = ``ClipTrainConfig().batch_size``, the pretraining default);
- SaSR-Net (``sasrnet``, its CPU preset ``cpu-small``) forward + ``compute_loss`` + backward + Adam step on
  a synthetic batch shaped like the synthetic AVQA world's features (audio [B,T,128], ``pixels`` visual
  grid [B,T,6,14,14], negatives for the match loss; B = ``TrainConfig().batch_size``).

FLOPs per step are counted once with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions,
attention; forward and backward). It has no formula for ``aten::lstm`` on CPU, so the LSTM question
encoder's FLOPs are added analytically (8·B·L·H·(I+H) forward, twice that backward). Elementwise ops and
the optimizer are not counted (they are memory-bound and small), so the fraction is a slight
underestimate of the work done. The peak is the median FLOP/s of an fp32 2048×2048 matmul
(2·n³ FLOPs); peak and model steps are timed in interleaved rounds so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "hw_efficiency"


# ------------------------------------------------------------------------------------------ counting


def count_flops(step: Callable[[], Any]) -> dict[str, Any]:
    """FLOPs of one call of ``step`` (FlopCounterMode + an analytic count for nn.LSTM modules)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lstm_flops = [0]

    def lstm_hook(mod: torch.nn.LSTM, args: tuple, _out: Any) -> None:
        x = args[0]
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            tokens = int(x.data.shape[0])
        else:
            tokens = int(x.shape[0] * x.shape[1]) if x.dim() == 3 else int(x.shape[0])
        dirs = 2 if mod.bidirectional else 1
        h, total = mod.hidden_size, 0
        for layer in range(mod.num_layers):
            i = mod.input_size if layer == 0 else h * dirs
            total += dirs * 2 * tokens * 4 * h * (i + h)  # two matmuls into the 4 gates
        lstm_flops[0] += total * (3 if torch.is_grad_enabled() else 1)  # backward ~2x forward

    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: lstm_hook(m, a, o) if isinstance(m, torch.nn.LSTM) else None
    )
    try:
        with FlopCounterMode(display=False) as fc:
            step()
    finally:
        handle.remove()
    counted = int(fc.get_total_flops())
    by_op = {str(op): int(c) for op, c in fc.get_flop_counts().get("Global", {}).items()}
    return {"flops": counted + lstm_flops[0], "flop_counter_flops": counted, "lstm_flops_analytic": lstm_flops[0],
            "by_op": by_op}


# ------------------------------------------------------------------------------------------ workloads


def matmul_peak_step(n: int) -> tuple[Callable[[], Any], int]:
    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    c = torch.empty(n, n)

    def step() -> None:
        torch.mm(a, b, out=c)

    return step, 2 * n**3


def clip_train_step(batch_size: int, seed: int = 0) -> tuple[Callable[[], Any], dict[str, Any]]:
    import torch
    from mmcore import clip_train
    from mmcore.data.shapes import make_shapes
    from mmcore.encoders.clip import create_clip

    cfg = clip_train.ClipTrainConfig()
    torch.manual_seed(seed)
    bundle = create_clip(cfg.model)
    model = bundle.model
    model.train()
    data = make_shapes(batch_size, seed=seed, image_size=bundle.image_size)
    gen = torch.Generator().manual_seed(seed)
    raw = torch.stack([torch.from_numpy(r.image.copy()).permute(2, 0, 1) for r in data.records])
    images = bundle.preprocess_train.batch(raw, generator=gen) if hasattr(bundle.preprocess_train, "batch") else \
        torch.stack([bundle.preprocess_train(r.load_image()) for r in data.records])
    rng = torch.Generator().manual_seed(seed + 1)
    texts = [r.captions[int(torch.randint(len(r.captions), (1,), generator=rng))] for r in data.records]
    tokens = bundle.tokenizer(texts)
    groups = clip_train._param_groups(model, cfg.weight_decay) if hasattr(clip_train, "_param_groups") \
        else model.parameters()
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    multi = texts if cfg.multi_positive else None

    def step() -> None:
        img, txt, scale = model(images, tokens)[:3]
        loss = clip_train.clip_loss(img.float(), txt.float(), scale.float(), multi)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    info = {"model": cfg.model, "batch_size": batch_size, "pretrain_default_batch_size": cfg.batch_size,
            "params": sum(p.numel() for p in model.parameters()), "image_size": bundle.image_size,
            "context_length": int(tokens.shape[1]), "optimizer": "AdamW", "loss": "clip_loss (multi-positive)"}
    return step, info


def sasrnet_train_step(size: str, batch_size: int | None, seed: int = 0) -> tuple[Callable[[], Any], dict[str, Any]]:
    import torch
    from sasrnet.config import TrainConfig, model_config
    from sasrnet.model import build_model, compute_loss, count_parameters

    tcfg = TrainConfig()
    bs = batch_size or tcfg.batch_size
    t, qlen, c, hw, a_dim = tcfg.n_segments, tcfg.max_question_len, 6, 14, 128  # synthetic world: `pixels` grid
    cfg = model_config("sasrnet", size, {"visual_channels": c, "audio_dim": a_dim})
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.train()
    g = torch.Generator().manual_seed(seed)
    batch = {
        "audio": torch.randn(bs, t, a_dim, generator=g),
        "visual": torch.rand(bs, t, c, hw, hw, generator=g),
        "visual_neg": torch.rand(bs, t, c, hw, hw, generator=g),
        "question": torch.randint(1, cfg.word_vocab, (bs, qlen), generator=g),
        "answer": torch.randint(0, cfg.n_answers, (bs,), generator=g),
        "sources": (torch.rand(bs, cfg.n_sources, generator=g) < 0.15).float(),
        "noise_seed": torch.arange(bs, dtype=torch.long),
    }
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)

    def step() -> None:
        terms = compute_loss(cfg, model(batch), batch)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    info = {"model": f"sasrnet ({size})", "batch_size": bs, "params": count_parameters(model), "dim": cfg.dim,
            "depth": cfg.depth, "segments": t, "visual_grid": [c, hw, hw], "question_len": qlen,
            "optimizer": "Adam", "loss": "compute_loss (answer + match + source + cls)"}
    return step, info


# ------------------------------------------------------------------------------------------ timing


def interleaved_times(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int,
                      inner: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each fn, one timed call (or ``inner[name]`` calls, timed one by one) per round;
    the order rotates per round; the first ``warmup`` rounds are dropped."""
    names = list(fns)
    inner = inner or {}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            for _ in range(inner.get(n, 1)):
                t0 = time.perf_counter()
                fns[n]()
                dt = time.perf_counter() - t0
                if r >= warmup:
                    times[n].append(dt)
    return times


def _stats(t: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "n": len(t)}


def _plot(rows: list[dict[str, Any]], peak: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    names = [r["workload"] for r in rows]
    vals = [r["achieved_gflop_per_s"] for r in rows]
    ax.barh(names, vals, color="tab:blue")
    ax.axvline(peak / 1e9, color="tab:red", ls="--", label=f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    for i, r in enumerate(rows):
        ax.text(vals[i], i, f" {100 * r['fraction_of_peak']:.1f}%", va="center")
    ax.set_xlabel("achieved GFLOP/s (median step)")
    ax.set_xlim(0, max([peak / 1e9, *vals]) * 1.2)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks hw_efficiency`: the keys of its --config YAML."""
    from benchmarks._common import RESULTS

    p = argparse.ArgumentParser(prog=f"benchmarks {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small batch / matmul, few repeats (smoke test / CI)")
    p.add_argument("--out", default=str(RESULTS), help="output directory (default benchmarks/results)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds after warm-up")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul side (default 2048; 1024 with --quick)")
    p.add_argument("--clip-batch", type=int, default=None, help="default: ClipTrainConfig().batch_size (16 with --quick)")
    p.add_argument("--sasr-size", default="cpu-small")
    p.add_argument("--sasr-batch", type=int, default=None, help="default: sasrnet TrainConfig().batch_size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return p


def main(argv: list[str]) -> dict[str, Any]:
    import torch

    from benchmarks._common import parse_args, png_path, write_result

    args = parse_args(build_parser(), argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rounds = args.rounds or (2 if args.quick else 5)
    warmup = 1 if args.quick else 2
    n = args.matmul_n or (1024 if args.quick else 2048)
    from mmcore.clip_train import ClipTrainConfig

    clip_bs = args.clip_batch or (16 if args.quick else ClipTrainConfig().batch_size)

    peak_step, peak_flops = matmul_peak_step(n)
    workloads: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}

    clip_step, clip_info = clip_train_step(clip_bs, args.seed)
    workloads["tiny CLIP train step"] = {"step": clip_step, "info": clip_info}
    try:
        sasr_step, sasr_info = sasrnet_train_step(args.sasr_size, args.sasr_batch, args.seed)
        workloads["SaSR-Net train step"] = {"step": sasr_step, "info": sasr_info}
    except ImportError as e:  # the sasrnet package is not installed with this member (uv sync --package mmcore)
        skipped["SaSR-Net train step"] = f"sasrnet not importable: {e}"

    for w in workloads.values():
        w["step"]()  # first call: allocations, lazy init (and optimizer state) before counting
        w["count"] = count_flops(w["step"])

    # the matmul is much shorter than a step: several timed calls per round keep its median stable
    fns = {"matmul": peak_step, **{k: w["step"] for k, w in workloads.items()}}
    times = interleaved_times(fns, rounds, warmup, inner={"matmul": 5})
    peak_t = _stats(times["matmul"])
    peak = peak_flops / peak_t["median_s"]

    rows, details = [], {}
    summary: dict[str, Any] = {"matmul_peak_gflop_per_s": peak / 1e9}
    for name, w in workloads.items():
        st = _stats(times[name])
        achieved = w["count"]["flops"] / st["median_s"]
        frac = achieved / peak
        rows.append({"workload": name, "batch": w["info"]["batch_size"], "gflop_per_step": w["count"]["flops"] / 1e9,
                     "median_step_s": st["median_s"], "achieved_gflop_per_s": achieved / 1e9,
                     "fraction_of_peak": frac})
        key = "clip" if "CLIP" in name else "sasrnet"
        summary[f"{key}_achieved_gflop_per_s"] = achieved / 1e9
        summary[f"{key}_fraction_of_peak"] = frac
        details[name] = {**w["info"], **w["count"], "timing": st}
    for name, why in skipped.items():
        summary[f"{'sasrnet' if 'SaSR' in name else name}_fraction_of_peak"] = None
        rows.append({"workload": name, "skipped": why})

    result = {
        "summary": summary,
        "table": rows,
        "peak": {"what": f"fp32 torch.mm {n}x{n} (2n^3 FLOPs)", "flops": peak_flops, "timing": peak_t},
        "workloads": details,
        "skipped": skipped,
        "settings": {"quick": args.quick, "seed": args.seed, "rounds": rounds, "warmup_rounds": warmup,
                     "matmul_n": n, "matmul_calls_per_round": 5, "torch_threads": torch.get_num_threads(),
                     "dtype": "float32", "counted": "FlopCounterMode (fwd+bwd matmul/conv/attention) + analytic "
                                                    "nn.LSTM; elementwise ops and optimizer not counted"},
    }
    png = png_path(NAME, args.out)
    _plot([r for r in rows if "skipped" not in r], peak, png)
    result["figure"] = png.name
    write_result(NAME, result, args.out)
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
