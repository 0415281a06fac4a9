"""`mm clip ...`: pretrain the offline tiny CLIP, evaluate any CLIP (zero-shot + retrieval)."""

from __future__ import annotations

from pathlib import Path

import typer

from mm_cli import common
from mm_cli.common import check_image_text_dataset, choose_clip_model, dataset_help, print_table, user_errors

app = typer.Typer(help="CLIP models: pretrain the offline tiny CLIP on synthetic shapes; evaluate any CLIP.",
                  no_args_is_help=True)


# committed recipes, mmcore/configs/clip/pretrain-<preset>.yaml (tests/cli/test_presets.py checks names and files agree)
PRETRAIN_PRESETS = {"default": "the ClipTrainConfig defaults written out (the tiny CLIP `mm demo` trains)",
                    "membership-leak": "the overfit tiny CLIP of benchmarks/unlearn_shapes' leaking-membership world"}


# --family -> (its training config, its pretraining recipe module with pretrain(cfg, out, resume=, overwrite=))
PRETRAIN_FAMILIES = {"clip": ("mmcore.clip_train.ClipTrainConfig", "mmcore.recipes.clip_pretrain"),
                     "blip": ("mmcore.blip_train.BlipTrainConfig", "mmcore.recipes.blip_pretrain")}


@app.command("pretrain")
@user_errors
def pretrain_cmd(
    out: Path = typer.Option(..., "--out", help="Output directory (model.safetensors, clip_config.json, metrics.json, log.jsonl; "
                             "--family blip: model/, a transformers folder)."),
    family: str = typer.Option("clip", "--family", help="clip: an open_clip CLIP (mmcore.clip_train.ClipTrainConfig) | "
                               "blip: a transformers BLIP, ITC + ITM with hard negatives (mmcore.blip_train.BlipTrainConfig; "
                               "the offline default mm-tiny-blip)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (data, init, order).", show_default="0"),
    dataset: str | None = typer.Option(None, "--dataset", help=dataset_help(), show_default="shapes"),
    data_root: Path | None = typer.Option(None, "--data-root", help="Dataset root (real datasets)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Real data: skip (and count in metrics.json) unreadable items instead of failing."),
    preset: str | None = common.preset_option("clip", PRETRAIN_PRESETS, "pretrain-<preset>"),
    config: Path | None = common.config_option("mmcore.clip_train.ClipTrainConfig; --family blip: mmcore.blip_train.BlipTrainConfig"),
    set_: list[str] | None = common.set_option(),
    print_config: bool = common.print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints",
                                          help="Keep OUT/checkpoint after the run finishes (removed by default)."),
) -> None:
    """Train the offline default tiny CLIP (mm-tiny-clip; --family blip: the tiny BLIP, mm-tiny-blip) on synthetic
    shapes and report held-out zero-shot shape accuracy ("a photo of a {shape}")."""
    from mmcore.errors import ConfigError

    fam = family.lower()
    if fam not in PRETRAIN_FAMILIES:
        raise ConfigError(f"--family must be one of {', '.join(PRETRAIN_FAMILIES)}; got {family!r}")
    if preset and fam != "clip":
        raise ConfigError(f"--preset names a CLIP recipe (mmcore/configs/clip/pretrain-*.yaml); with --family {fam} pass "
                          "--config FILE")
    cls_path, recipe_path = PRETRAIN_FAMILIES[fam]
    import importlib

    cls = getattr(importlib.import_module(cls_path.rsplit(".", 1)[0]), cls_path.rsplit(".", 1)[1])
    options = {"seed": seed, "dataset": dataset, "data_root": data_root and str(data_root), "skip_bad": skip_bad or None,
               "keep_checkpoints": keep_checkpoints or None}
    presets = [common.preset_file("clip", preset, PRETRAIN_PRESETS, stem=f"pretrain-{preset}")] if preset else []
    cfg, _ = common.run_config(cls, config=config, set_=set_, options=options, print_config=print_config,
                               preset_files=presets)
    check_image_text_dataset(cfg.dataset)
    pretrain = importlib.import_module(recipe_path).pretrain
    if fam != "clip":  # transformers' "Writing model shards" bars
        from mmcore.distributed import quiet_third_party_progress

        quiet_third_party_progress()
    metrics = pretrain(cfg, out, resume=resume, overwrite=overwrite)
    row = {"model": metrics["model"], "steps": metrics["steps"], "zero_shot_accuracy": float(metrics["zero_shot_accuracy"])}
    if "retrieval_i2t_R@1" in metrics:
        row.update({k: float(metrics[f"retrieval_{k}"]) for k in ("itc_i2t_R@1", "i2t_R@1", "itc_t2i_R@1", "t2i_R@1")})
    print_table("mm clip pretrain" + (f" --family {fam}" if fam != "clip" else ""), [{**row, "wall_seconds": float(metrics["wall_seconds"])}])


@app.command("eval")
@user_errors
def eval_cmd(
    model: str | None = typer.Option(None, "--model", help="A saved model directory (from `mm clip pretrain`), or an open_clip model name with --pretrained (or --random-init).", show_default="the tiny CLIP cached by `mm demo`"),
    pretrained: str | None = typer.Option(None, "--pretrained", help="open_clip pretrained tag or a local checkpoint (with a model name)."),
    dataset: str | None = typer.Option(None, "--dataset", help=dataset_help(), show_default="shapes"),
    data_root: Path | None = typer.Option(None, "--data-root", help="Dataset root (real datasets)."),
    split: str | None = typer.Option(None, "--split", help="Dataset split.", show_default="test"),
    n: int | None = typer.Option(None, "--n", help="shapes: images to generate (1000 when not given); real data: evaluate at most N records (the whole split when not given)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic data.", show_default="0"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per encoder batch.", show_default="256"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count in metrics.json) unreadable images and malformed annotation lines instead of failing."),
    caption_file: str | None = typer.Option(None, "--caption-file", help="flickr30k: auto | karpathy | csv, the caption file to read when both dataset_flickr30k.json and results.csv exist (auto: the Karpathy JSON).", show_default="auto"),
    out: Path = typer.Option(..., "--out", help="Output directory for metrics.json."),
    config: Path | None = common.config_option("mmcore.recipes.clip_eval.ClipEvalConfig"),
    set_: list[str] | None = common.set_option(),
    print_config: bool = common.print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    random_init: bool = typer.Option(False, "--random-init", help="Evaluate an architecture name's untrained weights on purpose (marked in metrics.json)."),
) -> None:
    """Zero-shot classification (when the dataset has classes) and image-text retrieval Recall@K."""
    import dataclasses

    from mmcore.encoders.clip import random_init_marks
    from mmcore.io import prepare_output_dir, write_json
    from mmcore.recipes.clip_eval import ClipEvalConfig, evaluate_clip_config

    options = {"model": model, "pretrained": pretrained, "dataset": dataset, "data_root": data_root and str(data_root),
               "split": split, "n": n, "seed": seed, "batch_size": batch_size, "skip_bad": skip_bad or None,
               "caption_file": caption_file}
    cfg, _ = common.run_config(ClipEvalConfig, config=config, set_=set_, options=options, print_config=print_config)
    check_image_text_dataset(cfg.dataset)
    # before the output dir and any weights
    cfg = dataclasses.replace(cfg, model=choose_clip_model(cfg.model, cfg.pretrained, random_init))
    model, dataset, split = cfg.model, cfg.dataset, cfg.split
    out_dir = prepare_output_dir(out, overwrite=overwrite)
    metrics = evaluate_clip_config(cfg)
    metrics.update(random_init_marks(cfg.model, cfg.pretrained))
    write_json(out_dir / "config.json", dataclasses.asdict(cfg))
    write_json(out_dir / "metrics.json", metrics)
    print_table(f"mm clip eval: {model} on {dataset}/{split}", eval_rows(metrics))


@app.command("export")
@user_errors
def export_cmd(
    out: Path = typer.Option(..., "--out", help="Output directory."),
    export_format: str = typer.Option("hf", "--format", help="hf: a transformers CLIPModel + CLIPProcessor "
                                      "(CLIPModel.from_pretrained(OUT); ViT image towers only) | open_clip: "
                                      "open_clip_model.safetensors + open_clip_config.json "
                                      "(open_clip.create_model_and_transforms('local-dir:OUT'))."),
    model: str | None = typer.Option(None, "--model", help="A saved model directory, or an open_clip model name with --pretrained.",
                                     show_default="the tiny CLIP cached by `mm demo`"),
    pretrained: str | None = typer.Option(None, "--pretrained", help="open_clip pretrained tag or a local checkpoint (with a model name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    random_init: bool = typer.Option(False, "--random-init", help="Export an architecture name's untrained weights on purpose."),
) -> None:
    """Convert a CLIP to transformers (both towers) or to an open_clip checkpoint."""
    from mmcore.errors import MMError

    if export_format not in ("hf", "open_clip"):
        raise MMError(f"--format must be hf or open_clip; got {export_format!r}")
    model = choose_clip_model(model, pretrained, random_init)
    from mmcore.encoders.clip import load_clip
    from mmcore.encoders.export import export_clip
    from mmcore.io import prepare_output_dir

    bundle = load_clip(model, pretrained)
    if export_format == "hf":  # refuse an unmappable model before creating the output directory
        from mmcore.encoders.export import to_hf_clip

        to_hf_clip(bundle.model, bundle.model_cfg)
    files = export_clip(bundle, prepare_output_dir(out, overwrite=overwrite), export_format)
    typer.echo(f"wrote {', '.join(str(p) for p in files.values())}")


def eval_rows(metrics: dict[str, object]) -> list[dict[str, object]]:
    """`mm clip eval`'s table on one scale: every accuracy and recall in percent (metrics.json keeps the
    zero-shot accuracy as the fraction mmcore returns), counts apart, the unit in each row's name."""
    rows: list[dict[str, object]] = []
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if k == "zero_shot_accuracy":
            rows.append({"metric": "zero-shot accuracy (%)", "value": f"{100.0 * v:.2f}"})
        elif "R@" in k:
            rows.append({"metric": f"{k} (%)", "value": f"{float(v):.2f}"})
        elif isinstance(v, int):
            rows.append({"metric": f"{k} (count)", "value": str(v)})
    return rows
