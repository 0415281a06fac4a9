"""SaSR-Net: our module against the authors' public code, train-step and eval throughput at identical shapes.

    MM_SASRNET_PUBLIC_DIR=/path/to/SaSR-Net uv run python -m benchmarks sasr_public_speed [--quick] [--threads 2]

Both models are the paper's sizes (the public code supports no other: 512-d, 22 sources, T = 10) with the
same weights (ours loaded from the public state dict, :func:`sasrnet.official.load_official`), in one
process, timed in interleaved rounds (medians). A train step is forward on B questions (each its own
video, so our per-video batching gives no advantage) with the published negatives (the whole network
reruns on other-video frames, both sides), the four-term loss, backward and an Adam step (the public
script's ``torch.optim.Adam``; ours :func:`mmcore.optim.adam`, the fused kernel). Eval is forward without
gradients in eval mode. The public code needs ``timm`` and ``einops`` importable; without
MM_SASRNET_PUBLIC_DIR the result records it as unavailable and times only ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

NAME = "sasr_public_speed"


def _public_model():
    """The public SaSR_Net, or the reason it cannot be loaded."""
    root = os.environ.get("MM_SASRNET_PUBLIC_DIR")
    if not root:
        return None, "MM_SASRNET_PUBLIC_DIR not set"
    sys.path[:0] = [str(Path(root) / "sasr_net"), str(Path(root) / "sasr_net/modules")]
    try:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        import models as public  # the public code's module name
        from loss import LossAVMatch, LossAVQA, LossCorrelation, LossSemantic
    except ImportError as e:
        return None, f"public code not importable from {root}: {e}"
    return (public.SaSR_Net(), (LossAVMatch(), LossAVQA(), LossCorrelation(22), LossSemantic())), None


def _inputs(b: int, seed: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, 10, 128, generator=g),
            "visual": torch.randn(b, 10, 512, 14, 14, generator=g).relu(),
            "visual_neg": torch.randn(b, 10, 512, 14, 14, generator=g).relu(),
            "question": torch.randint(0, 93, (b, 14), generator=g),
            "answer": torch.randint(0, 42, (b,), generator=g),
            "sources": (torch.rand(b, 22, generator=g) < 0.15).float(),
            "noise_seed": torch.arange(b, dtype=torch.long)}


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks sasr_public_speed`: the keys of its --config YAML."""
    from benchmarks._common import RESULTS

    p = argparse.ArgumentParser(prog=f"benchmarks {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 2, 1 round (smoke test)")
    p.add_argument("--batch", type=int, default=None, help="questions per step (default 8; paper training: 16)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds after warm-up (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the bar is on 2 threads)")
    p.add_argument("--out", default=str(RESULTS), help="output directory (default benchmarks/results)")
    return p


def main(argv: list[str]) -> dict[str, Any]:
    import torch
    from mmcore.optim import adam
    from sasrnet.model import compute_loss, count_parameters
    from sasrnet.official import load_official

    from benchmarks._common import parse_args, png_path, write_result
    from benchmarks.hw_efficiency import interleaved_times

    args = parse_args(build_parser(), argv)
    torch.set_num_threads(args.threads)
    b = args.batch or (2 if args.quick else 8)
    rounds, warmup = (1, 1) if args.quick else (args.rounds or 5, 1)

    torch.manual_seed(0)
    pub, why = _public_model()
    if pub is None:
        from sasrnet.model import build_model
        from sasrnet.official import paper_config

        ours = build_model(paper_config())
    else:
        ours = load_official(pub[0].state_dict())
    cfg = ours.cfg
    batch = _inputs(b, 0)
    opt = adam(ours.parameters(), lr=1e-4)

    def ours_train() -> None:
        ours.train()
        loss = compute_loss(cfg, ours(batch), batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def ours_eval() -> None:  # the same work as the public forward: the negative pass included
        ours.eval()
        with torch.no_grad():
            ours(batch)

    fns = {"ours train": ours_train, "ours eval": ours_eval}
    if pub is not None:
        model, (l_match, l_qa, l_cor, l_sem) = pub
        popt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def public_train() -> None:
            model.train()
            qa, m_pos, m_neg, cls, v_prob, a_prob, _ = model(batch["audio"], batch["visual"], batch["visual_neg"],
                                                              batch["question"])
            loss = (l_qa(qa, batch["answer"]) + 0.5 * l_match(m_pos, m_neg)
                    + 0.5 * (l_sem(v_prob, batch["sources"]) + l_sem(a_prob, batch["sources"])) + 0.5 * l_cor(cls))
            popt.zero_grad(set_to_none=True)
            loss.backward()
            popt.step()

        def public_eval() -> None:
            model.eval()
            with torch.no_grad():  # the public forward always computes the negative pass too
                model(batch["audio"], batch["visual"], batch["visual_neg"], batch["question"])

        fns |= {"public train": public_train, "public eval": public_eval}
    times = interleaved_times(fns, rounds, warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for task in ("train", "eval"):
        row: dict[str, Any] = {"task": task, "batch": b, "ours_questions_per_s": round(b / med[f"ours {task}"], 3)}
        if pub is not None:
            row["public_questions_per_s"] = round(b / med[f"public {task}"], 3)
            row["ratio_x"] = round(med[f"public {task}"] / med[f"ours {task}"], 3)
        rows.append(row)
    summary: dict[str, Any] = {"public_code": "available" if pub is not None else f"unavailable ({why})",
                               "threads": torch.get_num_threads(), "batch": b,
                               "sasr_module_params": count_parameters(ours.sasr)}
    if pub is not None:
        summary |= {"train_ratio_x": rows[0]["ratio_x"], "eval_ratio_x": rows[1]["ratio_x"],
                    "target_ratio_x": 1.0, "meets_target": rows[0]["ratio_x"] >= 1.0 and rows[1]["ratio_x"] >= 1.0}
    result = {"summary": summary, "table": rows,
              "timings": {k: {"median_s": med[k], "all_s": v} for k, v in times.items()},
              "settings": {"quick": args.quick, "rounds": rounds, "warmup_rounds": warmup,
                           "shapes": "audio [B,10,128], visual and negatives [B,10,512,14,14], question [B,14]",
                           "note": "eval on both sides includes the negative pass (the public forward always "
                                   "computes it); `mm avqa eval` itself skips it"}}
    png = png_path(NAME, args.out)
    _plot(rows, png, b, torch.get_num_threads())
    result["figure"] = png.name
    write_result(NAME, result, args.out)
    return result


def _plot(rows: list[dict[str, Any]], path: Path, b: int, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    tasks = [r["task"] for r in rows]
    xs = range(len(tasks))
    ax.bar([x - 0.2 for x in xs], [r["ours_questions_per_s"] for r in rows], 0.4, label="ours")
    if "public_questions_per_s" in rows[0]:
        ax.bar([x + 0.2 for x in xs], [r["public_questions_per_s"] for r in rows], 0.4, label="public code")
        for x, r in zip(xs, rows, strict=True):
            ax.text(x, max(r["ours_questions_per_s"], r["public_questions_per_s"]), f"{r['ratio_x']:.2f}x",
                    ha="center", va="bottom")
    ax.set_xticks(list(xs), tasks)
    ax.set_ylabel("questions / s (median)")
    ax.set_title(f"SaSR-Net at paper sizes, batch {b}, {threads} threads (CPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
