"""`mm diffusion pretrain` (the offline text-to-image default) and `mm unlearn diffusion-eval`.

``diffusion_eval`` is a plain function registered by the unlearn command group as
``mm unlearn diffusion-eval``. Nothing heavy is imported at module level.
"""

from __future__ import annotations

from pathlib import Path

import typer

from mm_cli.common import config_option, print_config_option, print_table, run_config, set_option, user_errors

app = typer.Typer(help="Text-to-image diffusion: train the offline default pipeline on synthetic shapes.",
                  no_args_is_help=True)


@app.command("pretrain")
@user_errors
def pretrain(
    clip: str = typer.Option(..., "--clip", help="Original CLIP model dir (e.g. from `mm clip pretrain`) whose text tower conditions the UNet."),
    out: Path = typer.Option(..., "--out", help="Output dir: a diffusers pipeline folder (+ detector/, metrics.json)."),
    preset: str = typer.Option("default", "--preset", help="default (<= 20 min on 2 CPU cores) | demo (a few minutes) | test (seconds)."),
    config: Path | None = config_option("cliperase.recipes.diffusion_pretrain.DiffusionPretrainConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out/checkpoint."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed.", show_default="0"),
) -> None:
    """Train the shape detector and a small text-conditional UNet on centred synthetic shapes."""
    from cliperase.recipes.diffusion_pretrain import PRESETS, DiffusionPretrainConfig, pretrain_diffusion
    from mmcore.errors import ConfigError

    if preset not in PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    cfg, _ = run_config(DiffusionPretrainConfig, config=config, set_=set_, options={"clip": clip, "seed": seed},
                        preset=PRESETS[preset], preset_label=f"--preset {preset}", print_config=print_config)
    metrics = pretrain_diffusion(cfg, out, overwrite=overwrite, resume=resume)
    rows = [{"shape": s, "detected": v} for s, v in metrics["check_detection"].items()]
    print_table(f"samples detected as their prompt's shape ({cfg.check_per_shape} per shape)", rows)
    typer.echo(f"pipeline saved to {out} ({metrics['steps_done']} steps, {metrics['total_seconds']:.0f} s)")


@user_errors
def diffusion_eval(
    original: str = typer.Option(..., "--original", help="Original CLIP model dir."),
    unlearned: str = typer.Option(..., "--unlearned", help="Unlearned CLIP model dir (from `mm unlearn run`)."),
    pipeline: str = typer.Option(..., "--pipeline", help="`mm diffusion pretrain` dir, a local diffusers dir or a hub id."),
    forget_prompts: list[str] = typer.Option(..., "--forget-prompts", help="Prompt naming the forgotten concept (repeatable)."),
    retain_prompts: list[str] | None = typer.Option(None, "--retain-prompts", help="Prompt for a retained concept (repeatable).", show_default="'a {class}' for each other class"),
    out: Path = typer.Option(..., "--out", help="Output dir for metrics.json and grid.png."),
    n_per_prompt: int | None = typer.Option(None, "--n-per-prompt", help="Images per prompt and encoder.", show_default="16"),
    steps: int | None = typer.Option(None, "--steps", help="Sampler steps.", show_default="30"),
    guidance_scale: float | None = typer.Option(None, "--guidance-scale", help="Classifier-free guidance scale.", show_default="2.0"),
    detector: str | None = typer.Option(None, "--detector", help="auto | clip | color (the shape's colour) | a detector dir.", show_default="auto"),
    classes: list[str] | None = typer.Option(None, "--classes", help="Class names for the CLIP zero-shot detector, or colours for --detector color (repeatable)."),
    config: Path | None = config_option("cliperase.recipes.diffusion_eval.DiffusionEvalConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the first image per prompt (image i uses seed + i).", show_default="0"),
) -> None:
    """Generate with the original and the unlearned text encoder; report concept detection and CLIP score."""
    from cliperase.recipes.diffusion_eval import DiffusionEvalConfig, format_summary
    from cliperase.recipes.diffusion_eval import diffusion_eval as run
    options = {
        "original": original, "unlearned": unlearned, "pipeline": pipeline,
        "forget_prompts": list(forget_prompts), "retain_prompts": list(retain_prompts) if retain_prompts else None,
        "n_per_prompt": n_per_prompt, "num_inference_steps": steps, "guidance_scale": guidance_scale,
        "detector": detector, "classes": list(classes) if classes else None, "seed": seed,
    }
    cfg, _ = run_config(DiffusionEvalConfig, config=config, set_=set_, options=options, print_config=print_config,
                        option_names={"num_inference_steps": "steps"})
    metrics = run(cfg, out, overwrite=overwrite)
    print_table("concept detection (fraction of generated images)", format_summary(metrics))

    def pct(k: str) -> str:
        return "n/a" if metrics.get(k) is None else f"{100 * metrics[k]:.0f}%"

    typer.echo(
        f"detection: forget {pct('forget_detection_before')} -> {pct('forget_detection_after')}, "
        f"retain {pct('retain_detection_before')} -> {pct('retain_detection_after')}; "
        f"wrote {out / 'metrics.json'} and {out / 'grid.png'}"
    )


# Also reachable as `mm diffusion eval` (same options).
app.command("eval")(diffusion_eval)
