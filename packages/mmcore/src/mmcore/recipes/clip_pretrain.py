"""`mm clip pretrain`: train a CLIP on an image–text dataset into a run directory.

Output directory of :func:`pretrain`::

    config.json         resolved ClipTrainConfig
    model.safetensors   weights + clip_config.json (mmcore.encoders.clip.load_clip)
    metrics.json        zero-shot accuracy on the held-out split, timings
    log.jsonl           training log (and the periodic zero-shot evaluations)
    checkpoint/         resumable state while running (kept with ``keep_checkpoints``)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmcore.clip_train import ClipTrainConfig, total_steps, train_clip


def _load(cfg: ClipTrainConfig, split: str, n: int, image_size: int):
    from mmcore.data.registry import load_image_text

    if cfg.dataset.lower() == "shapes":
        return load_image_text("shapes", split=split, n=n, seed=cfg.seed, image_size=image_size,
                               classes=cfg.shapes_classes)
    kw = {"skip_bad": True} if cfg.skip_bad else {}
    data = load_image_text(cfg.dataset, root=cfg.data_root, split=split, caption_file=cfg.caption_file, **kw)
    data = data.subset(range(min(n, len(data)))) if n > 0 else data
    return data.drop_unreadable()[0] if cfg.skip_bad else data


def pretrain(cfg: ClipTrainConfig, out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train a CLIP from ``cfg`` and write OUT/model.safetensors, clip_config.json, config.json,
    metrics.json (``zero_shot_accuracy`` on held-out data with ``cfg.templates``, ``wall_seconds``)."""
    from mmcore.encoders.clip import create_clip

    return pretrain_image_text(cfg, out_dir, create=lambda device: create_clip(cfg.model, cfg.pretrained, device=device),
                               save=lambda bundle, out: bundle.save(out), resume=resume, overwrite=overwrite)


def pretrain_image_text(
    cfg: ClipTrainConfig,
    out_dir: str | Path,
    *,
    create: Callable[[str], Any],
    save: Callable[[Any, Path], Any],
    objective: Callable[[Any], Any] | None = None,
    final_eval: Callable[[Any, Any], dict[str, Any]] | None = None,
    desc: str = "pretrain CLIP",
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The pretraining run of any image–text family (:mod:`mmcore.encoders.family`): ``create(device)`` the
    bundle, train it on ``cfg.dataset`` with :func:`~mmcore.clip_train.train_clip` (``objective(train_records)``:
    the step's loss, None: CLIP's), evaluate zero-shot on the held-out split, ``save(bundle, OUT)`` and write
    metrics.json (plus what ``final_eval(bundle, test_data)`` returns)."""
    t_start = time.perf_counter()
    from mmcore.distributed import build_accelerator, seed_everything
    from mmcore.encoders.clip import count_parameters
    from mmcore.eval.zeroshot import zero_shot_eval
    from mmcore.run import TrainingRun

    acc = build_accelerator(cfg.accelerator, project_dir=out_dir)
    run = TrainingRun.create(out_dir, acc, overwrite=overwrite, resume=resume, config=cfg)
    seed_everything(cfg.seed)
    bundle = create(str(acc.device))
    train = _load(cfg, "train", cfg.n_train, bundle.image_size)
    test = _load(cfg, "test", cfg.n_test, bundle.image_size)
    t_data = time.perf_counter() - t_start

    def on_eval(model: Any, step: int) -> dict[str, float]:
        r = zero_shot_eval(model, bundle.tokenizer, test, bundle.preprocess_eval, templates=cfg.templates,
                           batch_size=500, device=acc.device)
        return {"zero_shot_accuracy": r["accuracy"], "wall_seconds": round(time.perf_counter() - t_start, 3)}

    t_train = time.perf_counter()
    model = train_clip(bundle, train.records, cfg, run, desc=desc, on_eval=on_eval if cfg.eval_every > 0 else None,
                       objective=objective(train.records) if objective is not None else None)
    train_seconds = time.perf_counter() - t_train
    bundle.model = model  # the trained module, unwrapped
    final = zero_shot_eval(model, bundle.tokenizer, test, bundle.preprocess_eval, templates=cfg.templates,
                           batch_size=500, device=acc.device)
    metrics = {
        "zero_shot_accuracy": final["accuracy"],
        "per_class": final["per_class"],
        "n_test": final["n"],
        "templates": cfg.templates,
        "model": bundle.model_name,
        "n_params": count_parameters(model),
        "steps": total_steps(cfg, len(train.records)),
        "skipped": train.skipped + test.skipped,
        "data_seconds": round(t_data, 3),
        "train_seconds": round(train_seconds, 3),
    }
    if final_eval is not None:
        metrics.update(final_eval(bundle, test))
    metrics["wall_seconds"] = round(time.perf_counter() - t_start, 3)
    if run.writes:
        save(bundle, run.out)
    run.write_metrics(metrics)
    # the run is complete: the resumable state is dead weight now (unless asked to keep it)
    run.finish(keep_checkpoint=cfg.keep_checkpoints, end_training=True)
    return metrics
