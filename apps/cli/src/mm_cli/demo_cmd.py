"""`mm demo`: the project's purpose in miniature, offline, on a CPU, in a few minutes.

1. pretrain the tiny CLIP on synthetic shapes (or reuse the cached one),
2. forget the shape "circle" with CLIPErase and print zero-shot accuracy before / after,
3. train a small text-to-image diffusion model conditioned on the original text encoder (cached), then
   generate "circle" and retained-shape images with the original and with the unlearned text encoder,
4. AVQA miniature (mm_cli.demo_avqa): SaSR-Net, AVST and the question-only model on a small synthetic
   Music-AVQA world (cached), their test accuracies overall and on the templates that need vision, how flat
   their visual attention is, and one temporal question answered with its attention; it runs in a child
   process alongside steps 2-3 (both use one thread each: the two cores are busy at once).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from mm_cli.common import (
    pretrain_tiny_model,
    print_table,
    tiny_model_dir,
    tiny_model_ready,
    user_errors,
)


@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Output directory for this demo's results."),
    forget: str = typer.Option("circle", help="The shape to forget."),
    cache_dir: Path = typer.Option(None, help="Where trained models are cached (default $MM_CACHE or ~/.cache/mm)."),
    diffusion: bool = typer.Option(True, help="Run the diffusion step (the slowest part)."),
    avqa: bool = typer.Option(True, help="Run the AVQA part (SaSR-Net, AVST and question-only on a synthetic world)."),
    seed: int = typer.Option(0, help="Seed for pretraining, unlearning, sampling and the AVQA world."),
    tiny: bool = typer.Option(False, "--tiny", hidden=True,
                              help="Smoke-test sizes (seconds, meaningless numbers): used by the test suite."),
) -> None:
    """Run the offline story end to end at a small size and print a result table."""
    from mmcore.distributed import quiet_third_party_progress
    from mmcore.io import default_cache_dir, prepare_output_dir, write_json
    from rich.console import Console

    quiet_third_party_progress()
    console = Console()
    t0 = time.perf_counter()
    cache = (cache_dir or default_cache_dir()).expanduser()
    out = prepare_output_dir(out, overwrite=True)

    # 1. tiny CLIP (cached: a second demo starts here in seconds)
    clip_dir = tiny_model_dir("clip", seed, micro=tiny, cache=cache)
    if tiny_model_ready("clip", clip_dir):
        console.print(f"[bold]1/4[/] reusing the cached tiny CLIP in {clip_dir}")
    else:
        console.print(f"[bold]1/4[/] pretraining the tiny CLIP on synthetic shapes → {clip_dir}")
        pretrain_tiny_model("clip", clip_dir, seed, micro=tiny)
    from mmcore.io import read_json

    clip_metrics = read_json(clip_dir / "metrics.json")
    console.print(f"    zero-shot shape accuracy {100 * clip_metrics['zero_shot_accuracy']:.1f}%")

    # The AVQA part needs nothing above and runs on one thread, as the diffusion training does: it starts now,
    # in a child process on the second core, and its tables are printed at the end.
    background = None
    if avqa:
        from mm_cli.demo_avqa import BackgroundAvqaDemo

        background = BackgroundAvqaDemo(cache, out / "avqa", seed, tiny)
        console.print(f"    the AVQA part (4/4) runs in the background meanwhile; log: {background.log}")
    try:
        summary = _clip_parts(console, cache, out, clip_dir, clip_metrics, forget, seed, tiny, diffusion)
        if background is not None:
            console.print("[bold]4/4[/] audio-visual question answering: SaSR-Net vs the question-only model")
            from mm_cli.demo_avqa import print_avqa_demo

            summary["avqa"] = background.result()
            print_avqa_demo(summary["avqa"], console)
    finally:
        if background is not None:
            background.stop()
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "summary.json", summary)
    console.print(f"[bold green]done[/] in {summary['wall_seconds']:.0f} s — results in {out}")


def _clip_parts(console: Any, cache: Path, out: Path, clip_dir: Path, clip_metrics: dict, forget: str, seed: int,
                tiny: bool, diffusion: bool) -> dict:
    """Steps 2 and 3: unlearning, then the diffusion check; returns their part of the summary."""
    from mmcore.io import read_json

    # 2. unlearning
    console.print(f"[bold]2/4[/] forgetting {forget!r} with CLIPErase")
    from cliperase.recipes.runner import run_demo_unlearning

    small = {"n_train": 200, "n_test": 100, "steps": 2, "retrieval_max_pairs": 50} if tiny else {}
    un = run_demo_unlearning(clip_dir, out / "unlearn", forget=forget, seed=seed, **small)
    rows = [
        # cliperase reports accuracies in percent already.
        {"split": name, "before (%)": un["before"][key], "after (%)": un["after"][key]}
        for name, key in (
            (f"forget ({forget})", "forget_accuracy"),
            ("retain (other shapes)", "retain_accuracy"),
            ("held-out test", "test_accuracy"),
        )
    ]
    print_table(f"Zero-shot accuracy before / after forgetting {forget!r} ({un['wall_seconds']:.0f} s)", rows)
    summary = {"clip": clip_metrics, "unlearning": un}

    # 3. diffusion
    if diffusion:
        from cliperase.recipes.diffusion_eval import run_diffusion_eval
        from cliperase.recipes.diffusion_pretrain import (
            DiffusionPretrainConfig,
            apply_preset,
            pretrain_diffusion,
        )

        # Keyed by the CLIP it was trained on: a retrained CLIP invalidates the cached pipeline.
        clip_stamp = int((clip_dir / "model.safetensors").stat().st_mtime)
        preset = "test" if tiny else "demo"
        pipe_dir = cache / f"diffusion-{preset}-seed{seed}-clip{clip_stamp}"
        if (pipe_dir / "model_index.json").is_file():
            console.print(f"[bold]3/4[/] reusing the cached diffusion model in {pipe_dir}")
        else:
            console.print(f"[bold]3/4[/] training a small text-to-image diffusion model → {pipe_dir}")
            cfg = apply_preset(DiffusionPretrainConfig(clip=str(clip_dir), seed=seed), preset)
            pretrain_diffusion(cfg, pipe_dir, overwrite=True)
        # The small diffusion model draws only a few shapes; retain prompts use the others it knows.
        known = read_json(pipe_dir / "config.json")["shapes"]
        if forget not in known:
            from mmcore.errors import MMError

            raise MMError(f"the demo diffusion model draws only {', '.join(known)}; pick --forget from those")
        retain = [s for s in known if s != forget]
        ev = run_diffusion_eval(
            clip_dir, out / "unlearn", pipe_dir,
            forget_prompts=[f"a photo of a {forget}"],
            retain_prompts=[f"a photo of a {s}" for s in retain],
            out_dir=out / "diffusion", n_per_prompt=2 if tiny else 8, seed=seed, overwrite=True,
            **({"num_inference_steps": 2} if tiny else {}),
        )
        print_table(
            "Concept detection in generated images (original → unlearned text encoder)",
            [
                {"prompts": f"forget ({forget})", "original (%)": 100 * ev["forget_detection_before"],
                 "unlearned (%)": 100 * ev["forget_detection_after"]},
                {"prompts": "retain (" + ", ".join(retain) + ")", "original (%)": 100 * ev["retain_detection_before"],
                 "unlearned (%)": 100 * ev["retain_detection_after"]},
            ],
        )
        console.print(f"    image grid: {out / 'diffusion' / 'grid.png'}")
        summary["diffusion"] = {k: v for k, v in ev.items() if isinstance(v, int | float | str)}

    return summary
