"""`mm avqa pretrain-grounding | train | eval | predict`: SaSR-Net, AVST and the question-only baseline.

Nothing heavy is imported at module level (`mm --help` stays fast)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sasrnet.registry import avqa_model_names, avqa_model_spec

from mm_cli import common
from mm_cli.common import config_option, print_config_option, print_table, run_config, set_option, user_errors

_DATA_HELP = ("Data dir with annotations/avqa-{train,val,test}.json and features/ "
              "(`mm avqa synth` + `mm avqa extract-features --out DIR/features`).")


def _paths(data: Path | None, train_ann: Path | None, val_ann: Path | None, test_ann: Path | None,
           features: Path | None):
    from sasrnet.data import data_paths

    return data_paths(data, train_ann=train_ann, val_ann=val_ann, test_ann=test_ann, features=features)


# committed recipes, sasrnet/configs/avqa/<model>-<preset>.yaml (the question-only model uses SaSR-Net's)
PRESETS = {"paper": "the published recipe (SaSR-Net: 80 epochs, batch 16, StepLR(16, 0.3); AVST: ST-AVQA's)",
           "cpu-benchmark": "the recipe of benchmarks/avqa_synth (cpu-small, 15 epochs; see the YAML)"}


def _preset_file(preset: str, model: str | None) -> Path:
    """sasrnet/configs/avqa/<model>-<preset>.yaml (package data)."""
    return common.preset_file("avqa", preset, PRESETS, stem=f"{'avst' if model == 'avst' else 'sasrnet'}-{preset}")


def _type_table(title: str, results: dict[str, dict]) -> None:
    """One row per report key (A-Count ... overall), one column per model."""
    from sasrnet.metrics import REPORT_KEYS

    rows = [{"type": k, **{name: (float(m[k]) if m.get(k) is not None else "-") for name, m in results.items()}}
            for k in REPORT_KEYS]
    print_table(title, rows, ["type", *results])


@user_errors
def train(
    model: str | None = typer.Option(None, "--model", help=f"{' | '.join(avqa_model_names())} (`mm avqa models`).",
                                     show_default="sasrnet"),
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output dir (weights, vocabularies, config.json, metrics.json, log.jsonl)."),
    train_ann: Path | None = typer.Option(None, "--train-ann", help="Training annotations (real Music-AVQA)."),
    val_ann: Path | None = typer.Option(None, "--val-ann", help="Validation annotations (best checkpoint kept)."),
    test_ann: Path | None = typer.Option(None, "--test-ann", help="Test annotations (evaluated after training)."),
    features: Path | None = typer.Option(None, "--features", help="Feature root (audio/, visual/ in the ST-AVQA layout)."),
    size: str | None = typer.Option(None, "--size", help="Model size: paper | cpu-small | cpu-tiny. The size "
                                    "only: epochs, lr etc. stay the paper's unless --preset / --config / --set change them.",
                                    show_default="paper"),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (the paper's).", show_default="80"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Global batch size (the paper's).", show_default="16"),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (the paper's).", show_default="1"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count bad annotations / feature files."),
    preset: str | None = common.preset_option("avqa", PRESETS, "<model>-<preset>"),
    config: Path | None = config_option("sasrnet.config.TrainConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out/checkpoint exactly."),
) -> None:
    """Train an AVQA model (accelerate; multi-process with `accelerate launch -m mm_cli.main avqa train ...`).

    Settings: TrainConfig defaults (the paper's) < --preset file < --config file < explicit options < --set."""
    from sasrnet.config import TrainConfig, model_config

    explicit = {"model": model, "size": size, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                "skip_bad": skip_bad or None}
    presets = [_preset_file(preset, model)] if preset is not None else []
    cfg, sources = run_config(TrainConfig, config=config, set_=set_, options=explicit, print_config=print_config,
                              preset_files=presets)
    model_config(cfg.model, cfg.size, cfg.arch, sources=sources)  # a bad arch key fails now, naming its source
    from sasrnet.recipes.train import train as run

    metrics = run(cfg, _paths(data, train_ann, val_ann, test_ann, features), out, resume=resume, overwrite=overwrite)
    from mmcore.distributed import is_main_process

    if not is_main_process():
        return
    results = {f"val (epoch {metrics['best_epoch']})": metrics["val"]} if metrics.get("val") else {}
    if metrics.get("test"):
        results["test"] = metrics["test"]
    if results:
        _type_table(f"{cfg.model}: accuracy (%) per question type", results)
    typer.echo(f"{metrics['steps']} steps, {metrics['train_samples_per_s']} samples/s; wrote {out}")


@user_errors
def pretrain_grounding(
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output dir (model.safetensors for --set init_from=..., metrics.json, log.jsonl)."),
    train_ann: Path | None = typer.Option(None, "--train-ann", help="Training annotations (its videos are used)."),
    val_ann: Path | None = typer.Option(None, "--val-ann", help="Validation annotations (match accuracy per epoch)."),
    features: Path | None = typer.Option(None, "--features", help="Feature root (audio/, visual/ in the ST-AVQA layout)."),
    size: str | None = typer.Option(None, "--size", help="Model size preset of the later training run: paper | cpu-small | cpu-tiny.", show_default="paper"),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (ST-AVQA's).", show_default="30"),
    config: Path | None = config_option("sasrnet.config.GroundingConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """ST-AVQA's grounding pre-training (audio-visual match only); start `train` from it with
    `--set init_from=OUT/model.safetensors`."""
    from sasrnet.config import GroundingConfig, model_config

    cfg, sources = run_config(GroundingConfig, config=config, set_=set_, options={"size": size, "epochs": epochs},
                              print_config=print_config)
    model_config("avst", cfg.size, cfg.arch, sources=sources)  # the grounding model is an AVST
    from sasrnet.recipes.grounding import pretrain_grounding as run
    m = run(cfg, _paths(data, train_ann, val_ann, None, features), out, overwrite=overwrite)
    from mmcore.distributed import is_main_process

    if is_main_process():
        typer.echo(f"{m['steps']} steps on {m['train_videos']} videos; validation match accuracy "
                   f"{m['val_match_accuracy']}%; wrote {out}/model.safetensors")


@user_errors
def eval_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Output dir of `mm avqa train`."),
    data: Path | None = typer.Option(None, "--data", help=_DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output dir: metrics.json, predictions.jsonl, accuracy.png."),
    ann: Path | None = typer.Option(None, "--ann", help="Annotations to evaluate.", show_default="DATA/annotations/avqa-test.json"),
    features: Path | None = typer.Option(None, "--features", help="Feature root.", show_default="DATA/features"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Questions per batch.", show_default="64"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count bad entries and missing features (answers unseen in training always count as wrong)."),
    config: Path | None = config_option("sasrnet.config.EvalConfig"),
    set_: list[str] | None = set_option(),
    print_config: bool = print_config_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Per-type accuracy (A-Count ... AV-Temp, group averages, overall) of a trained model."""
    from sasrnet.config import EvalConfig
    from sasrnet.recipes.evaluate import evaluate

    options = {"annotations": ann and str(ann), "batch_size": batch_size, "skip_bad": skip_bad or None}
    cfg, _ = run_config(EvalConfig, config=config, set_=set_, options=options, print_config=print_config,
                        option_names={"annotations": "ann"})
    m = evaluate(checkpoint, _paths(data, None, None, None, features), out, annotations=cfg.annotations,
                 batch_size=cfg.batch_size, skip_bad=cfg.skip_bad, overwrite=overwrite)
    _type_table(f"accuracy (%) on {Path(m['annotations']).name}", {m["model"]: m})  # the full path: metrics.json
    if any(m["skipped"].values()):
        typer.echo(f"skipped: {m['skipped']}", err=True)
    if m["unseen_answers"]:
        typer.echo(f"{m['unseen_answers']} question(s) have answers never seen in training: counted as wrong", err=True)
    typer.echo(f"wrote {out}/metrics.json")


@user_errors
def predict(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Output dir of `mm avqa train`."),
    video: Path = typer.Option(..., "--video", help="Video file (features are extracted like the training ones)."),
    question: str = typer.Option(..., "--question", help='Question text, e.g. "How many instruments are sounding?".'),
    top_k: int = typer.Option(5, "--top-k", help="How many answers to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Answer one question about one video; shows the top answers and the temporal attention."""
    from sasrnet.recipes.evaluate import predict as run

    res = run(checkpoint, video, question, top_k=top_k)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(f"answer: {res['answer']}")
    print_table("top answers", [{"answer": t["answer"], "probability": t["prob"]} for t in res["top"]])
    if "temporal_attention" in res:
        ta = res["temporal_attention"]
        print_table("temporal attention over segments",
                    [{"segment": i, "audio": a, "visual": v} for i, (a, v) in enumerate(zip(ta["audio"], ta["visual"], strict=True))])
    if res["unknown_words"]:
        typer.echo(f"words not in the training vocabulary: {', '.join(res['unknown_words'])}", err=True)


@user_errors
def import_official(
    checkpoint: Path = typer.Argument(..., help="A state dict of the public SaSR-Net code (torch.save of SaSR_Net)."),
    train_ann: Path = typer.Option(..., "--train-ann", help="The avqa-train.json it was trained on (the public code "
                                                            "builds its vocabularies from it)."),
    out: Path = typer.Option(..., "--out", help="Model dir to write (for `mm avqa eval --checkpoint`)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Convert a checkpoint of the authors' public SaSR-Net code into a model dir of this project."""
    from sasrnet.official import import_official as run

    info = run(checkpoint, train_ann, out, overwrite=overwrite)
    cfg = info["model_config"]
    typer.echo(f"wrote {out}: SaSR-Net (paper sizes), {cfg['word_vocab']} question words, {cfg['n_answers']} answers")


@user_errors
def models() -> None:
    """List the registered AVQA models (sasrnet.registry)."""
    rows = []
    for name in avqa_model_names():
        s = avqa_model_spec(name)
        rows.append({"model": name, "video": "yes" if s.uses_video else "no",
                     "source tokens": "yes" if s.source_tokens else "no",
                     "grounding": "yes" if s.grounding else "no", "what": s.help})
    print_table("AVQA models (`mm avqa train --model`)", rows)


def register(app: typer.Typer) -> None:
    """Add `models`, `pretrain-grounding`, `train`, `eval`, `predict` and `import-official` to `mm avqa`."""
    app.command("models")(models)
    app.command("pretrain-grounding")(pretrain_grounding)
    app.command("train")(train)
    app.command("eval")(eval_cmd)
    app.command("predict")(predict)
    app.command("import-official")(import_official)
