"""`mm avqa extract-features`: videos → ST-AVQA feature layout (OUT/audio, OUT/visual, OUT/features.json).

Nothing heavy is imported at module level (`mm --help` stays fast)."""

from __future__ import annotations

from pathlib import Path

import typer

from mm_cli.common import config_option, print_config_option, print_table, run_config, set_option, user_errors


@user_errors
def extract_features(
    videos: Path = typer.Option(..., "--videos", help="Folder of videos (*.mp4, ...; or a `mm avqa synth` dir with videos/)."),
    out: Path = typer.Option(..., "--out", help="Output dir: audio/<id>.npy [T,128], visual/<id>.npy [T,C,h,w], features.json."),
    visual: str | None = typer.Option(None, "--visual", help="Grid encoder: pixels[:G] (6x14x14) | resnet18:WEIGHTS | resnet18-random | clip:DIR_OR_NAME[@PRETRAINED].", show_default="pixels"),
    audio: str | None = typer.Option(None, "--audio", help="Audio encoder: logmel (128-d) | vggish:WEIGHTS.", show_default="logmel"),
    fps: float | None = typer.Option(None, "--fps", help="Steps per second (as ST-AVQA).", show_default="1.0"),
    n_steps: int | None = typer.Option(None, "--n-steps", help="Fixed steps per video (pad by repeating the last / cut).", show_default="the video's length"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Frames per encoder batch.", show_default="64"),
    backend: str | None = typer.Option(None, "--backend", help="Video decoder: auto | decord | pyav.", show_default="auto"),
    device: str | None = typer.Option(None, "--device", help="Torch device for the encoders (cpu, cuda).", show_default="cpu"),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads.", show_default="1 for pixels, torch's default otherwise"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable videos (counted in features.json) instead of stopping."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (default: resume, skipping videos already done)."),
    config: Path | None = config_option("mmcore.avqa.feature_extraction.FeatureConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
) -> None:
    """Extract per-second audio vectors and visual grids for every video (resumable, batched)."""
    from mmcore.avqa.feature_extraction import FeatureConfig
    from mmcore.avqa.feature_extraction import extract_features as run

    options = {
        "videos": str(videos), "out": str(out), "visual": visual, "audio": audio, "fps": fps, "n_steps": n_steps,
        "batch_size": batch_size, "backend": backend, "device": device, "threads": threads,
        "skip_bad": skip_bad or None, "overwrite": overwrite or None,
    }
    cfg, _ = run_config(FeatureConfig, config=config, set_=set_, options=options, print_config=print_config)
    meta = run(
        cfg.videos, cfg.out, visual=cfg.visual, audio=cfg.audio, fps=cfg.fps, n_steps=cfg.n_steps,
        batch_size=cfg.batch_size, image_size=cfg.image_size, backend=cfg.backend, device=cfg.device, threads=cfg.threads,
        skip_bad=cfg.skip_bad, overwrite=cfg.overwrite, num_workers=cfg.num_workers,
    )
    print_table("extracted features", [{
        "videos": meta["n_videos"], "extracted": meta["n_extracted"], "already done": meta["n_existing"],
        "bad (skipped)": meta["n_bad"], "visual [C,h,w]": "x".join(map(str, meta["visual_shape"])),
        "audio dim": meta["audio_dim"], "seconds": meta["seconds"],
    }])
    for b in meta["bad"][:10]:
        typer.echo(f"skipped {b['video']}: {b['error']}", err=True)
    typer.echo(f"features written to {out}")


def register(app: typer.Typer) -> None:
    """Add `extract-features` to the `mm avqa` group."""
    app.command("extract-features")(extract_features)
