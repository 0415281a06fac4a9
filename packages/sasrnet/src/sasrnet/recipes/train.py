"""Training, evaluation and single-video prediction for SaSR-Net, AVST and the question-only model.

Fixes the public code's defects: every epoch visits ALL batches; a checkpoint that cannot be
loaded is an error, never silently ignored; evaluation is batched.

Output / checkpoint directory of :func:`train`:
    config.json            resolved TrainConfig
    model.json             model kind + ModelConfig + input facts (segments, question length, features.json)
    question_vocab.json    answer_vocab.json   (built from the training split, saved with the model)
    model.safetensors      best-validation weights (last epoch's if there is no validation split)
    checkpoint/            resumable state (weights, Adam, StepLR, RNG, epoch + batch position)
    log.jsonl  metrics.json  accuracy.png  test_predictions.jsonl (with a test split)
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mmcore.avqa.feature_data import planned_batches
from mmcore.checkpoint import load_model_weights, save_model, unwrap
from mmcore.distributed import (
    build_accelerator,
    global_batches,
    grouped_global_batches,
    progress_bar,
    seed_everything,
    shard_indices,
    world_size,
)
from mmcore.errors import DataError, MMError
from mmcore.io import read_json, write_json
from mmcore.optim import adam, warmup_factor
from mmcore.run import CONFIG_FILE, TrainingRun

from sasrnet.config import ModelConfig, TrainConfig, model_config
from sasrnet.data import (
    NEGATIVE_KINDS,
    DataPaths,
    build_vocabs,
    collate,
    data_paths,
    feature_dataset,
    input_statistics,
    load_questions,
    negative_frames,
    to_device,
)
from sasrnet.diagnostics import diagnostics, module_grad_norms
from sasrnet.metrics import majority_answers, plot_type_accuracies
from sasrnet.model import AVQAModel, build_model, compute_loss, count_parameters
from sasrnet.recipes.evaluate import (
    MODEL_FILE,
    accuracies,
    evaluate_split,
    plot_split,
    predict_split,
    write_predictions,
)
from sasrnet.registry import avqa_model_spec


def _init_from(model: AVQAModel, path: Path) -> int:
    """Initialise the parameters whose names exist in ``path`` (the paper starts SaSR-Net from ST-AVQA's
    grounding weights): a safetensors file of this package, or the authors' PyTorch grounding checkpoint
    (``.pt`` / ``.pth``: its audio embedding, grounding and match-head tensors, see
    :func:`sasrnet.official.grounding_init_weights`). Unlike the public code, a missing or unrelated file
    is an error, never ignored."""
    from mmcore.io import load_safetensors

    if not path.is_file():
        raise DataError(path, "init_from file not found (grounding weights: `mm avqa pretrain-grounding --out DIR` "
                              "writes DIR/model.safetensors; an empty init_from starts from scratch)")
    if path.suffix in (".pt", ".pth"):
        from sasrnet.official import grounding_init_weights

        tensors = grounding_init_weights(path)
    else:
        tensors = load_safetensors(path)
    own = model.state_dict()
    matched = {k: v for k, v in tensors.items() if k in own}
    if not matched:
        raise DataError(path, "no parameter of this file matches the model; wrong --set init_from?")
    bad = [f"{k}: {list(v.shape)} vs {list(own[k].shape)}" for k, v in matched.items() if v.shape != own[k].shape]
    if bad:
        raise DataError(path, f"shape mismatch with the model: {'; '.join(bad[:5])}")
    model.load_state_dict(matched, strict=False)
    return len(matched)


def build_optimizer(model: AVQAModel, cfg: TrainConfig) -> tuple[Any, Any]:
    """The recipe's Adam (fused kernel: the same update, cheaper on the CPU; the SaSR module's parameters
    at ``lr * sasr_lr_scale``) and its per-epoch StepLR. The public scripts: ``optim.Adam(model.parameters(),
    lr)``, ``StepLR(step_size, gamma)``; ``tests/sasrnet/test_official*.py`` compare one step with theirs."""
    import torch

    sasr = [p for n, p in model.named_parameters() if n.startswith("sasr.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("sasr.")]
    groups = [{"params": rest}] + ([{"params": sasr, "lr": cfg.lr * cfg.sasr_lr_scale}] if sasr else [])
    opt = adam(groups, lr=cfg.lr)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)


def _check_same_config(path: Path, cfg: TrainConfig) -> None:
    """Resuming with other settings would silently mix two runs; only ``epochs`` may grow."""
    if not path.is_file():
        return
    old, new = read_json(path), dataclasses.asdict(cfg)
    diff = sorted(k for k in set(old) | set(new) if k != "epochs" and old.get(k) != new.get(k))
    if diff:
        raise MMError(f"{path}: --resume with a different config ({', '.join(diff)} changed); "
                      "use the same settings or start a new --out")


def set_lr(opt: Any, sched: Any, step: int | None, warmup_steps: int) -> None:
    """Linear warm-up over the first ``warmup_steps`` optimizer steps on top of the per-epoch StepLR
    (a function of the step count only, so a resumed run gets the same rates)."""
    f = 1.0 if step is None else warmup_factor(step, warmup_steps)
    for g, lr in zip(opt.param_groups, sched.get_last_lr(), strict=True):
        g["lr"] = lr * f


def _write_model_files(out: Path, mcfg: ModelConfig, cfg: TrainConfig, paths: DataPaths, qv: Any, av: Any,
                       majority: dict[str, str]) -> None:
    feats_json = paths.features / "features.json"
    info = {
        "majority_answers": majority,  # per type, for the chance level of later evaluations
        "kind": mcfg.kind,
        "model_config": dataclasses.asdict(mcfg),
        "n_segments": cfg.n_segments,
        "max_question_len": cfg.max_question_len,
        "multiple_choice": cfg.multiple_choice,
        "features_dir": str(paths.features),
        "features": read_json(feats_json) if feats_json.is_file() else None,
    }
    write_json(out / "model.json", info)
    qv.save(out / "question_vocab.json")
    av.save(out / "answer_vocab.json")


def train(
    cfg: TrainConfig,
    data: str | Path | DataPaths,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Train ``cfg.model`` on ``data`` into ``out_dir``; returns the metrics (also in metrics.json).

    ``resume`` continues from ``out_dir/checkpoint`` exactly (same batches, optimizer, scheduler and
    RNG state as an uninterrupted run); without a checkpoint it starts fresh. ``max_steps`` stops
    after that many optimizer steps in total, writing a checkpoint (time-boxed runs, tests)."""
    import torch

    acc = build_accelerator(cfg.accelerator, project_dir=None)
    out = Path(out_dir)
    run = TrainingRun.create(out, acc, overwrite=overwrite, resume=resume)
    seed_everything(cfg.seed)
    paths = data_paths(data)
    if paths.train_ann is None:
        raise MMError(f"no training annotations: expected {paths.features.parent}/annotations/avqa-train.json "
                      "or --train-ann FILE")

    train_q = load_questions(paths.train_ann, multiple_choice=cfg.multiple_choice, skip_bad=cfg.skip_bad)
    if cfg.max_train_questions > 0:
        train_q = train_q[: cfg.max_train_questions]
    if not train_q:
        raise DataError(paths.train_ann, "no training questions")
    qv, av = build_vocabs(train_q, cfg.multiple_choice)
    skipped: dict[str, int] = {"train_annotations": getattr(train_q, "skipped", 0)}
    unseen: dict[str, int] = {}  # questions whose answer never occurs in training: counted wrong, per split
    common = dict(n_segments=cfg.n_segments, max_question_len=cfg.max_question_len, skip_bad=cfg.skip_bad,
                  multiple_choice=cfg.multiple_choice)
    train_ds = feature_dataset(train_q, paths.features, qv, av, **common, cache=cfg.cache_features)
    skipped["train_features"] = train_ds.skipped
    val_ds = None
    if paths.val_ann is not None:
        val_q = load_questions(paths.val_ann, multiple_choice=cfg.multiple_choice, skip_bad=cfg.skip_bad)
        skipped["val_annotations"] = getattr(val_q, "skipped", 0)
        if val_q:
            # a validation answer never seen in training cannot be predicted: it stays, counted as wrong
            val_ds = feature_dataset(val_q, paths.features, qv, av, **common, cache=cfg.cache_features,
                                     unseen_answers="wrong")
            skipped["val_features"] = val_ds.skipped
            unseen["val"] = val_ds.n_unseen_answers
    n = len(train_ds)
    if n < cfg.batch_size:
        raise MMError(f"{paths.train_ann}: {n} usable training questions, fewer than batch_size={cfg.batch_size}")
    if cfg.batch_size % world_size():
        raise MMError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world_size()})")
    # the feature key of each item (video_id; AVQA-Yang: video_name), to pick negatives from other videos
    video_ids = [getattr(q, "video_name", None) or q.video_id for q in train_ds.questions]
    videos = list(dict.fromkeys(video_ids))
    video_number = {v: k for k, v in enumerate(videos)}

    first = train_ds[0]
    c = int(first["visual"].shape[1]) if "visual" in first else 512
    hw = tuple(int(x) for x in first["visual"].shape[2:4]) if "visual" in first else (14, 14)
    a_dim = int(first["audio"].shape[-1]) if "audio" in first else 128
    mcfg = model_config(cfg.model, cfg.size, {**cfg.arch, "visual_channels": c, "grid_h": hw[0], "grid_w": hw[1],
                                              "audio_dim": a_dim, "n_segments": cfg.n_segments,
                                              "word_vocab": len(qv), "n_answers": len(av),
                                              "multiple_choice": cfg.multiple_choice})
    spec = avqa_model_spec(mcfg.kind)
    model = build_model(mcfg)
    if spec.uses_video and cfg.standardize_inputs and hasattr(model, "set_input_stats"):  # TRAIN statistics, saved with the weights
        stats = input_statistics(train_ds)
        model.set_input_stats(stats["audio_mean"], stats["audio_std"], stats["visual_mean"], stats["visual_std"])
    if cfg.answer_bias_init == "prior" and not cfg.multiple_choice and hasattr(model, "set_answer_prior"):
        counts = Counter(int(train_ds[i]["answer"]) for i in range(len(train_ds)))
        model.set_answer_prior(torch.tensor([counts.get(i, 0) for i in range(len(av))]))
    elif cfg.answer_bias_init not in ("default", "prior"):
        raise MMError(f"unknown answer_bias_init {cfg.answer_bias_init!r} (default | prior)")
    opt, sched = build_optimizer(model, cfg)

    if cfg.init_from:
        _init_from(model, Path(cfg.init_from))
    state = {"epoch": 0, "batch": 0, "step": 0, "best_val": None, "best_epoch": None, "train_time": 0.0,
             "samples": 0, "history": []}
    if run.has_checkpoint:
        _check_same_config(out / CONFIG_FILE, cfg)
        state["step"], extra = run.resume(model, opt, sched)
        state.update(extra)
    run.save_config(cfg)
    if run.writes:
        _write_model_files(out, mcfg, cfg, paths, qv, av,
                           majority_answers([(q.type_key, str(q.answer)) for q in train_ds.questions]))
    model, opt = acc.prepare(model, opt)  # the scheduler is stepped by hand, once per epoch
    if state["step"] == 0:
        run.log({"event": "start", "model": mcfg.kind, "params": count_parameters(model), "train_questions": n,
                 "val_questions": len(val_ds) if val_ds else 0, "processes": world_size()})

    def checkpoint(epoch: int, batch: int) -> None:
        run.checkpoint(model, opt, sched, state["step"],
                       {k: v for k, v in {**state, "epoch": epoch, "batch": batch}.items() if k != "step"})

    steps_per_epoch = n // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    use_negatives = spec.grounding and mcfg.w_match > 0  # no match loss: no negatives to build
    if use_negatives and len(videos) < 2:
        raise DataError(paths.train_ann, "the match loss needs at least 2 training videos")
    if cfg.negatives not in NEGATIVE_KINDS:  # before any work, not at the first batch
        raise MMError(f"unknown negatives {cfg.negatives!r} ({' | '.join(NEGATIVE_KINDS)})")
    diag_batch = _diagnostics_batch(val_ds or train_ds, cfg.diagnostics_questions, spec.diagnostics)
    if max_steps is not None and state["step"] >= max_steps:
        checkpoint(state["epoch"], state["batch"])
        return {"interrupted": True, "step": state["step"], "epoch": state["epoch"]}
    with progress_bar(total, f"train {mcfg.kind}") as advance:
        advance(state["step"])
        for epoch in range(state["epoch"], cfg.epochs):
            model.train()
            batches = (grouped_global_batches(video_ids, cfg.batch_size, cfg.seed, epoch, cfg.questions_per_video)
                       if cfg.questions_per_video > 0 else global_batches(n, cfg.batch_size, cfg.seed, epoch))
            start = state["batch"] if epoch == state["epoch"] else 0
            t0 = time.perf_counter()
            # per-term losses summed over the epoch's steps, grad norms over its logged steps; kept in the
            # checkpoint, so a resumed epoch's means cover all its steps
            if start == 0 or "epoch_sums" not in state:
                state["epoch_sums"] = {"steps": 0, "logged": 0, "sums": {}}
            acc_ = state["epoch_sums"]
            sums = acc_["sums"]
            plans = []
            for b in range(start, len(batches)):
                local = shard_indices(batches[b])
                step_b = state["step"] + b - start
                # one seed per video and optimizer step: the Gumbel noise and the negative frames are drawn
                # afresh on every forward, and the same however the global batch is split over processes
                seeds = [(cfg.seed * 1_000_003 + step_b) * 1_000_003 + video_number[video_ids[i]] for i in local]
                plans.append((train_ds, local, videos if use_negatives else None, seeds, cfg.negatives))
            built = planned_batches(batch_with_negatives, plans, num_workers=cfg.num_workers,
                                    pin_memory=acc.device.type == "cuda")
            for b, batch in zip(range(start, len(batches)), built, strict=True):
                gb = batches[b]
                batch = to_device(batch, acc.device)
                terms = compute_loss(mcfg, model(batch), batch)
                opt.zero_grad(set_to_none=True)
                acc.backward(terms["loss"])
                grad_norm = None
                if cfg.grad_clip > 0:  # the pre-clipping global norm is logged: a clipped run shows how much
                    grad_norm = float(acc.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                set_lr(opt, sched, state["step"], cfg.warmup_steps)
                opt.step()
                state["step"] += 1
                state["samples"] += len(gb)
                vals = {k: float(v.detach()) for k, v in terms.items()}
                if grad_norm is not None:
                    vals["grad_norm"] = grad_norm
                advance(1, epoch=epoch, loss=vals["loss"])
                acc_["steps"] += 1
                for k, v in vals.items():
                    sums[k] = sums.get(k, 0.0) + v
                if state["step"] % 10 == 0 or b == len(batches) - 1:
                    # per-block gradient norms, after clipping (one factor for every block: their shares stand)
                    acc_["logged"] += 1
                    for k, v in module_grad_norms(unwrap(model)).items():
                        sums[f"grad.{k}"] = sums.get(f"grad.{k}", 0.0) + v
                    run.log({"epoch": epoch, **vals, "lr": sched.get_last_lr()[0]}, step=state["step"])
                stop = max_steps is not None and state["step"] >= max_steps
                if stop or (cfg.checkpoint_every_steps > 0 and state["step"] % cfg.checkpoint_every_steps == 0):
                    state["train_time"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    checkpoint(epoch, b + 1)
                if stop:
                    return {"interrupted": True, "step": state["step"], "epoch": epoch}
            state["train_time"] += time.perf_counter() - t0
            set_lr(opt, sched, None, 0)  # StepLR scales the un-warmed learning rate
            sched.step()
            record: dict[str, Any] = {"epoch": epoch, "event": "epoch_end"}
            if acc_["steps"]:  # this epoch's means
                record["terms"] = {k: round(v / acc_["steps"], 6) for k, v in sums.items() if not k.startswith("grad.")}
                record["grad_norms"] = {k[5:]: round(v / max(acc_["logged"], 1), 6) for k, v in sums.items()
                                        if k.startswith("grad.")}
            if diag_batch is not None:
                record["diagnostics"] = diagnostics(unwrap(model), to_device(diag_batch, acc.device))
            if val_ds is not None:
                val = accuracies(predict_split(model, val_ds, cfg.eval_batch_size, f"val {epoch}", num_workers=cfg.num_workers))
                record["val_overall"] = val["overall"]
                if state["best_val"] is None or val["overall"] > state["best_val"]["overall"]:
                    state["best_val"], state["best_epoch"] = val, epoch
                    if acc.is_main_process:
                        save_model(model, out / MODEL_FILE)
            elif acc.is_main_process:
                save_model(model, out / MODEL_FILE)
            state["history"].append(record)
            run.log(record, step=state["step"])
            state["batch"] = 0
            checkpoint(epoch + 1, 0)

    metrics: dict[str, Any] = {
        "model": mcfg.kind,
        "size": cfg.size,
        "params": count_parameters(unwrap(model)),
        "epochs": cfg.epochs,
        "steps": state["step"],
        "processes": world_size(),
        "best_epoch": state["best_epoch"],
        "val": state["best_val"],
        "train_samples_per_s": round(state["samples"] / max(state["train_time"], 1e-9), 2),
        "train_time_s": round(state["train_time"], 2),
        "skipped": skipped,
        "unseen_answers": unseen,  # per split: questions whose answer never occurs in training (counted wrong)
        "history": state["history"],
    }
    if paths.test_ann is not None:
        best = build_model(mcfg)
        load_model_weights(best, out / MODEL_FILE)
        best.to(acc.device)
        metrics["test"], test_recs = evaluate_split(best, paths, paths.test_ann, qv, av, cfg.n_segments,
                                                     cfg.max_question_len, cfg.eval_batch_size, cfg.multiple_choice,
                                                     skip_bad=True, num_workers=cfg.num_workers)
        if acc.is_main_process:
            write_predictions(out / "test_predictions.jsonl", test_recs, av)
    run.write_metrics(metrics)
    if run.writes:
        if metrics.get("test"):
            plot_split(out / "accuracy.png", mcfg.kind, metrics["test"], "test", test_recs,
                        majority_answers([(q.type_key, str(q.answer)) for q in train_ds.questions]))
        elif metrics["val"]:
            plot_type_accuracies({mcfg.kind: metrics["val"]}, out / "accuracy.png",
                                 title=f"{mcfg.kind}: best validation accuracy ({metrics['val']['n_questions']} questions)")
    run.finish(keep_checkpoint=True)  # kept: --resume with more epochs continues from it
    return metrics


def batch_with_negatives(ds: Any, local: list[int], videos: list[str] | None, seeds: list[int],
                         negatives: str = "shuffled") -> dict:
    """Collate ``local``; with ``videos`` (the training videos), add each row video's negative frames, drawn
    from the other videos with the row's seed (see :func:`sasrnet.data.negative_frames`)."""
    items = [ds[i] for i in local]
    if videos is None:
        return collate(items, seeds)
    rows: dict[str, int] = {}
    for it, sd in zip(items, seeds, strict=True):
        rows.setdefault(it["video_id"], sd)
    return collate(items, seeds, negative_frames(ds, list(rows), videos, [s + 1 for s in rows.values()], negatives))


def _diagnostics_batch(ds: Any, n_questions: int, measurable: bool) -> dict | None:
    """The first ``n_questions`` questions of ``ds`` collated once (the per-epoch diagnostics' fixed batch),
    or None where there is nothing to measure (none asked, a model without the diagnosed outputs such as the
    question-only one, fewer than 2 videos)."""
    if n_questions <= 0 or not measurable or len(ds) == 0:
        return None
    batch = collate([ds[i] for i in range(min(n_questions, len(ds)))])
    return batch if len(batch["audio"]) >= 2 else None
