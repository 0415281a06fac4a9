"""`mm avqa stats` and `mm avqa synth`: annotation statistics and the synthetic AVQA world.

Nothing heavy is imported at module level (`mm --help` stays fast)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer
from mmcore.avqa.format import annotation_formats

from mm_cli.common import config_option, print_config_option, print_table, run_config, set_option, user_errors


@user_errors
def stats(
    file: Path = typer.Argument(..., help="Annotation JSON file (Music-AVQA avqa-*.json, or AVQA-Yang)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON instead of a table."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count malformed entries instead of stopping."),
    annotation_format: str | None = typer.Option(
        None, "--format", help=f"{' | '.join(annotation_formats())} (a file mixing formats is an error).",
        show_default="decided from all entries",
    ),
) -> None:
    """Questions, videos, distinct answers and questions per type of an annotation file."""
    from mmcore.avqa.annotations import load_avqa_annotations
    from mmcore.errors import MMError

    if annotation_format is not None and annotation_format not in annotation_formats():
        raise MMError(f"--format must be one of {', '.join(annotation_formats())}; got {annotation_format!r}")
    fmt, qs = load_avqa_annotations(file, format=annotation_format, skip_bad=skip_bad)
    if fmt == "avqa-yang":
        from mmcore.avqa import avqa_yang

        result = avqa_yang.stats(qs) | {"format": fmt, "skipped": qs.skipped}
        per_type_rows = [{"type": t, "questions": n} for t, n in result["per_type"].items()]
    else:
        from mmcore.avqa import music_avqa

        result = music_avqa.stats(qs) | {"format": fmt, "skipped": qs.skipped}
        per_type_rows = [
            {"type": t, "key": k, "questions": n}
            for (t, n), k in zip(result["per_type"].items(), result["per_type_key"], strict=True)
        ]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    summary = {k: result[k] for k in ("questions", "videos", "answers", "templates") if k in result}
    print_table(f"{file.name} ({result['format']})", [summary | {"skipped": result["skipped"]}])
    print_table("questions per type", per_type_rows)
    for p in qs.problems[:10]:
        typer.echo(f"skipped {p}", err=True)


@dataclass
class SynthConfig:
    """`mm avqa synth` settings (mmcore.avqa.synth.synthesize's arguments)."""

    videos: int = 200  # number of clips
    seed: int = 0  # the whole world is deterministic from it
    questions_per_video: int = 12  # at most
    duration: int = 10  # clip length, seconds
    fps: int = 4
    width: int = 96  # multiple of 6
    height: int = 64  # even
    frames: str = "lit"  # lit: an instrument's plate lights up while it sounds; static: one frame repeated


@user_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Output dir: videos/*.mp4, annotations/avqa-{train,val,test}.json, world.json."),
    videos: int | None = typer.Option(None, "--videos", help="Number of clips.", show_default=str(SynthConfig.videos)),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (the whole world is deterministic from it).",
                                    show_default=str(SynthConfig.seed)),
    questions_per_video: int | None = typer.Option(None, "--questions-per-video", help="Questions asked per clip (at most).",
                                                   show_default=str(SynthConfig.questions_per_video)),
    duration: int | None = typer.Option(None, "--duration", help="Clip length in seconds.", show_default=str(SynthConfig.duration)),
    fps: int | None = typer.Option(None, "--fps", help="Video frame rate.", show_default=str(SynthConfig.fps)),
    width: int | None = typer.Option(None, "--width", help="Frame width (multiple of 6).", show_default=str(SynthConfig.width)),
    height: int | None = typer.Option(None, "--height", help="Frame height (even).", show_default=str(SynthConfig.height)),
    frames: str | None = typer.Option(None, "--frames", help="lit: each instrument's plate lights up while it sounds "
                                      "(the video follows the audio); static: one frame repeated (the earlier world).",
                                      show_default=SynthConfig.frames),
    config: Path | None = config_option("mm_cli.avqa_data_cmds.SynthConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Render a synthetic Music-AVQA-style world: real mp4 clips + questions in the real JSON format."""
    options = {"videos": videos, "seed": seed, "questions_per_video": questions_per_video, "duration": duration,
               "fps": fps, "width": width, "height": height, "frames": frames}
    cfg, _ = run_config(SynthConfig, config=config, set_=set_, options=options, print_config=print_config)
    from mmcore.avqa.synth import synthesize
    from mmcore.io import prepare_output_dir

    prepare_output_dir(out, overwrite=overwrite)
    s = synthesize(out, cfg.videos, cfg.seed, duration_s=cfg.duration, fps=cfg.fps, size=(cfg.width, cfg.height),
                   questions_per_video=cfg.questions_per_video, frames=cfg.frames)  # fmt: skip
    print_table("synthetic AVQA world", [{
        "videos": s["videos"], **{f"q {k}": v for k, v in s["questions_per_split"].items()},
        "templates": s["templates_used"], "answers": s["answers"], "seconds": s["seconds"],
    }])  # fmt: skip
    print_table("questions per type", [{"type": k, "questions": v} for k, v in sorted(s["per_type"].items())])
    typer.echo(f"written to {out}")


def register(app: typer.Typer) -> None:
    """Add `stats` and `synth` to the `mm avqa` group."""
    app.command("stats")(stats)
    app.command("synth")(synth)
