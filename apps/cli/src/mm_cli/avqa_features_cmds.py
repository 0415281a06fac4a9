"""`mm avqa extract-features`: videos → ST-AVQA feature layout (OUT/audio, OUT/visual, OUT/features.json).

Nothing heavy is imported at module level (`mm --help` stays fast)."""

from __future__ import annotations

from pathlib import Path

import typer

from mm_cli.common import print_table, user_errors


@user_errors
def extract_features(
    videos: Path = typer.Option(..., "--videos", help="Folder of videos (*.mp4, ...; or a `mm avqa synth` dir with videos/)."),
    out: Path = typer.Option(..., "--out", help="Output dir: audio/<id>.npy [T,128], visual/<id>.npy [T,C,h,w], features.json."),
    visual: str | None = typer.Option(None, "--visual", help="Grid encoder: pixels[:G] (default, 6x14x14) | resnet18:WEIGHTS | resnet18-random | clip:DIR_OR_NAME[@PRETRAINED]."),
    audio: str | None = typer.Option(None, "--audio", help="Audio encoder: logmel (default, 128-d) | vggish:WEIGHTS."),
    fps: float | None = typer.Option(None, "--fps", help="Steps per second (default 1, as ST-AVQA)."),
    n_steps: int | None = typer.Option(None, "--n-steps", help="Fixed steps per video (pad by repeating the last / cut); default: the video's length."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Frames per encoder batch."),
    backend: str | None = typer.Option(None, "--backend", help="Video decoder: auto | decord | pyav."),
    device: str | None = typer.Option(None, "--device", help="Torch device for the encoders (cpu, cuda)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads (default: 1 for pixels, torch's default otherwise)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable videos (counted in features.json) instead of stopping."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (default: resume, skipping videos already done)."),
    config: Path | None = typer.Option(None, "--config", help="TOML/YAML config file (keys of mmcore.features.FeatureConfig)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config key, e.g. --set image_size=112 (repeatable)."),
) -> None:
    """Extract per-second audio vectors and visual grids for every video (resumable, batched)."""
    from mmcore.config import parse_set_options, resolve_config
    from mmcore.features import FeatureConfig
    from mmcore.features import extract_features as run

    overrides = {
        **parse_set_options(set_),
        "videos": str(videos), "out": str(out), "visual": visual, "audio": audio, "fps": fps, "n_steps": n_steps,
        "batch_size": batch_size, "backend": backend, "device": device, "threads": threads,
        "skip_bad": skip_bad or None, "overwrite": overwrite or None,
    }
    cfg = resolve_config(FeatureConfig, config, overrides)
    meta = run(
        cfg.videos, cfg.out, visual=cfg.visual, audio=cfg.audio, fps=cfg.fps, n_steps=cfg.n_steps,
        batch_size=cfg.batch_size, image_size=cfg.image_size, backend=cfg.backend, device=cfg.device, threads=cfg.threads,
        skip_bad=cfg.skip_bad, overwrite=cfg.overwrite,
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
