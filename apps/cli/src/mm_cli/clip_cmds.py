"""`mm clip ...`: pretrain the offline tiny CLIP, evaluate any CLIP (zero-shot + retrieval)."""

from __future__ import annotations

from pathlib import Path

import typer

from mm_cli.common import check_image_text_dataset, choose_clip_model, print_table, user_errors

app = typer.Typer(help="CLIP models: pretrain the offline tiny CLIP on synthetic shapes; evaluate any CLIP.",
                  no_args_is_help=True)


@app.command("pretrain")
@user_errors
def pretrain_cmd(
    out: Path = typer.Option(..., "--out", help="Output directory (model.safetensors, clip_config.json, metrics.json, log.jsonl)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (data, init, order)."),
    dataset: str | None = typer.Option(None, "--dataset", help="shapes | cifar100 | flickr30k | cc12m | wds [default: shapes]."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Dataset root (real datasets)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Real data: skip (and count in metrics.json) unreadable items instead of failing."),
    config: Path | None = typer.Option(None, "--config", help="TOML/YAML file with ClipTrainConfig fields."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config field: key=value (repeatable), e.g. steps=200."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints",
                                          help="Keep OUT/checkpoint after the run finishes (removed by default)."),
) -> None:
    """Train the offline default tiny CLIP (mm-tiny-clip) on synthetic shapes and report held-out
    zero-shot shape accuracy ("a photo of a {shape}")."""
    from mmcore.clip_train import ClipTrainConfig, pretrain
    from mmcore.config import parse_set_options, resolve_config

    overrides: dict[str, object] = dict(parse_set_options(set_))
    if seed is not None:
        overrides["seed"] = seed
    if keep_checkpoints:
        overrides["keep_checkpoints"] = True
    overrides.update({k: v for k, v in (("dataset", dataset), ("data_root", data_root and str(data_root)),
                                        ("skip_bad", skip_bad or None)) if v is not None})
    cfg = resolve_config(ClipTrainConfig, config, overrides)
    check_image_text_dataset(cfg.dataset)
    metrics = pretrain(cfg, out, resume=resume, overwrite=overwrite)
    print_table(
        "mm clip pretrain",
        [{"model": metrics["model"], "steps": metrics["steps"], "zero_shot_accuracy": float(metrics["zero_shot_accuracy"]),
          "wall_seconds": float(metrics["wall_seconds"])}],
    )


@app.command("eval")
@user_errors
def eval_cmd(
    model: str | None = typer.Option(None, "--model", help="A saved model directory (from `mm clip pretrain`), or an open_clip model name with --pretrained (or --random-init) [default: the tiny CLIP cached by `mm demo`]."),
    pretrained: str | None = typer.Option(None, "--pretrained", help="open_clip pretrained tag or a local checkpoint (with a model name)."),
    dataset: str = typer.Option("shapes", "--dataset", help="shapes | cifar100 | flickr30k | cc12m | wds."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Dataset root (real datasets)."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    n: int | None = typer.Option(None, "--n", help="shapes: images to generate [default: 1000]; real data: evaluate at most N records [default: the whole split]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic data."),
    batch_size: int = typer.Option(256, "--batch-size"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count in metrics.json) unreadable images and malformed annotation lines instead of failing."),
    caption_file: str = typer.Option("auto", "--caption-file", help="flickr30k: auto | karpathy | csv, the caption file to read when both dataset_flickr30k.json and results.csv exist [default: auto = the Karpathy JSON]."),
    out: Path = typer.Option(..., "--out", help="Output directory for metrics.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    random_init: bool = typer.Option(False, "--random-init", help="Evaluate an architecture name's untrained weights on purpose (marked in metrics.json)."),
) -> None:
    """Zero-shot classification (when the dataset has classes) and image-text retrieval Recall@K."""
    from mmcore.clip_train import evaluate_clip
    from mmcore.encoders.clip import random_init_marks
    from mmcore.io import prepare_output_dir, write_json

    check_image_text_dataset(dataset)
    model = choose_clip_model(model, pretrained, random_init)  # before the output dir and any weights
    out_dir = prepare_output_dir(out, overwrite=overwrite)
    metrics = evaluate_clip(model, pretrained, dataset, data_root=data_root, split=split, n=n, seed=seed,
                            batch_size=batch_size, skip_bad=skip_bad, caption_file=caption_file)
    metrics.update(random_init_marks(model, pretrained))
    write_json(out_dir / "config.json", {"model": model, "pretrained": pretrained, "dataset": dataset,
                                          "data_root": data_root, "split": split, "n": n, "seed": seed,
                                          "skip_bad": skip_bad, "caption_file": caption_file})
    write_json(out_dir / "metrics.json", metrics)
    print_table(f"mm clip eval: {model} on {dataset}/{split}", eval_rows(metrics))


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
