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

from mmcore.checkpoint import load_model_weights, load_training_state, save_model, save_training_state, unwrap
from mmcore.config import save_config
from mmcore.distributed import (
    JsonlLogger,
    build_accelerator,
    global_batches,
    grouped_global_batches,
    is_main_process,
    progress_bar,
    rank,
    seed_everything,
    shard_indices,
    world_size,
)
from mmcore.errors import DataError, MMError
from mmcore.io import prepare_output_dir, read_json, write_json
from mmcore.optim import adam

from sasrnet.config import GroundingConfig, ModelConfig, TrainConfig, model_config, model_config_from_dict
from sasrnet.data import (
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
from sasrnet.metrics import majority_answer_accuracy, majority_answers, plot_type_accuracies, type_accuracies
from sasrnet.model import AVQAModel, build_model, compute_loss, count_parameters

MODEL_FILE = "model.safetensors"
CKPT_DIR = "checkpoint"


def _init_from(model: AVQAModel, path: Path) -> int:
    """Initialise the parameters whose names exist in ``path`` (the paper starts SaSR-Net from ST-AVQA's
    grounding weights): a safetensors file of this package, or the authors' PyTorch grounding checkpoint
    (``.pt`` / ``.pth``: its audio embedding, grounding and match-head tensors, see
    :func:`sasrnet.official.grounding_init_weights`). Unlike the public code, a missing or unrelated file
    is an error, never ignored."""
    from mmcore.io import load_safetensors

    if not path.is_file():
        raise DataError(path, "init_from file not found")
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


def _check_same_config(path: Path, cfg: TrainConfig) -> None:
    """Resuming with other settings would silently mix two runs; only ``epochs`` may grow."""
    if not path.is_file():
        return
    old, new = read_json(path), dataclasses.asdict(cfg)
    diff = sorted(k for k in set(old) | set(new) if k != "epochs" and old.get(k) != new.get(k))
    if diff:
        raise MMError(f"{path}: --resume with a different config ({', '.join(diff)} changed); "
                      "use the same settings or start a new --out")


def _set_lr(opt: Any, sched: Any, step: int | None, warmup_steps: int) -> None:
    """Linear warm-up over the first ``warmup_steps`` optimizer steps on top of the per-epoch StepLR
    (a function of the step count only, so a resumed run gets the same rates)."""
    f = 1.0 if step is None or warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
    for g, lr in zip(opt.param_groups, sched.get_last_lr(), strict=True):
        g["lr"] = lr * f


def _gather_objects(obj: list) -> list:
    """Concatenate per-process lists on every process (identity on one process)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return [x for p in parts for x in p]


def predict_split(model: AVQAModel, ds: Any, batch_size: int, description: str = "eval") -> list[dict]:
    """Batched inference over a dataset (sharded over processes, gathered); one record per question,
    in dataset order: question_id, video_id, question, type_key, answer index (-1: unseen in training),
    answer_text, prediction index."""
    import torch

    model = unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    recs: list[dict] = []
    chunks = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
    with torch.no_grad(), progress_bar(len(chunks), description) as advance:
        for chunk in chunks:
            local = shard_indices(chunk)
            if local:
                batch = collate([ds[i] for i in local])
                pred = model(to_device(batch, device))["logits"].argmax(-1).cpu()
                for j, i in enumerate(local):
                    q = ds.questions[i]
                    recs.append({"index": i, "question_id": int(batch["question_id"][j]), "video_id": batch["video_id"][j],
                                 "question": " ".join(q.words), "template": getattr(q, "template", None),
                                 "type_key": batch["type_key"][j],
                                 "answer": int(batch["answer"][j]), "answer_text": str(q.answer),
                                 "prediction": int(pred[j])})
            advance()
    model.train(was_training)
    return sorted(_gather_objects(recs), key=lambda r: r["index"])


def _accuracies(recs: list[dict]) -> dict:
    return type_accuracies([r["type_key"] for r in recs], [r["answer"] == r["prediction"] for r in recs])


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
    if acc.is_main_process:
        prepare_output_dir(out, overwrite=overwrite, resume=resume)
    acc.wait_for_everyone()
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
    model = build_model(mcfg)
    if mcfg.kind != "blind" and cfg.standardize_inputs:  # TRAIN statistics, saved with the weights
        stats = input_statistics(train_ds)
        model.set_input_stats(stats["audio_mean"], stats["audio_std"], stats["visual_mean"], stats["visual_std"])
    if cfg.answer_bias_init == "prior" and not cfg.multiple_choice:
        counts = Counter(int(train_ds[i]["answer"]) for i in range(len(train_ds)))
        model.set_answer_prior(torch.tensor([counts.get(i, 0) for i in range(len(av))]))
    elif cfg.answer_bias_init not in ("default", "prior"):
        raise MMError(f"unknown answer_bias_init {cfg.answer_bias_init!r} (default | prior)")
    sasr = [p for n, p in model.named_parameters() if n.startswith("sasr.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("sasr.")]
    groups = [{"params": rest}] + ([{"params": sasr, "lr": cfg.lr * cfg.sasr_lr_scale}] if sasr else [])
    opt = adam(groups, lr=cfg.lr)  # fused kernel: the same update, cheaper on the CPU
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)

    if cfg.init_from:
        _init_from(model, Path(cfg.init_from))
    state = {"epoch": 0, "batch": 0, "step": 0, "best_val": None, "best_epoch": None, "train_time": 0.0,
             "samples": 0, "history": []}
    ckpt = out / CKPT_DIR
    if resume and (ckpt / "state.json").is_file():
        _check_same_config(out / "config.json", cfg)
        loaded = load_training_state(ckpt, model, opt, sched)
        state.update(loaded["extra"])
        state["step"] = loaded["step"]
    if acc.is_main_process:
        save_config(cfg, out / "config.json")
        _write_model_files(out, mcfg, cfg, paths, qv, av,
                           majority_answers([(q.type_key, str(q.answer)) for q in train_ds.questions]))
    model, opt = acc.prepare(model, opt)  # the scheduler is stepped by hand, once per epoch
    log = JsonlLogger(out / "log.jsonl")
    if acc.is_main_process and state["step"] == 0:
        log.log({"event": "start", "model": mcfg.kind, "params": count_parameters(model), "train_questions": n,
                 "val_questions": len(val_ds) if val_ds else 0, "processes": world_size()})

    def checkpoint(epoch: int, batch: int) -> None:
        if acc.is_main_process:
            save_training_state(ckpt, model, opt, sched, step=state["step"],
                                extra={k: v for k, v in {**state, "epoch": epoch, "batch": batch}.items() if k != "step"})
        acc.wait_for_everyone()

    steps_per_epoch = n // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    use_negatives = mcfg.kind != "blind"
    if use_negatives and len(videos) < 2:
        raise DataError(paths.train_ann, "the match loss needs at least 2 training videos")
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
            for b in range(start, len(batches)):
                gb = batches[b]
                local = shard_indices(gb)
                # one seed per video and optimizer step: the Gumbel noise and the negative frames are drawn
                # afresh on every forward, and the same however the global batch is split over processes
                seeds = [(cfg.seed * 1_000_003 + state["step"]) * 1_000_003 + video_number[video_ids[i]] for i in local]
                batch = _batch_with_negatives(train_ds, local, videos if use_negatives else None, seeds)
                batch = to_device(batch, acc.device)
                terms = compute_loss(mcfg, model(batch), batch)
                opt.zero_grad(set_to_none=True)
                acc.backward(terms["loss"])
                grad_norm = None
                if cfg.grad_clip > 0:  # the pre-clipping global norm is logged: a clipped run shows how much
                    grad_norm = float(acc.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                _set_lr(opt, sched, state["step"], cfg.warmup_steps)
                opt.step()
                state["step"] += 1
                state["samples"] += len(gb)
                vals = {k: float(v.detach()) for k, v in terms.items()}
                if grad_norm is not None:
                    vals["grad_norm"] = grad_norm
                advance(1, epoch=epoch, loss=vals["loss"])
                if state["step"] % 10 == 0 or b == len(batches) - 1:
                    log.log({"epoch": epoch, **vals, "lr": sched.get_last_lr()[0]}, step=state["step"])
                stop = max_steps is not None and state["step"] >= max_steps
                if stop or (cfg.checkpoint_every_steps > 0 and state["step"] % cfg.checkpoint_every_steps == 0):
                    state["train_time"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    checkpoint(epoch, b + 1)
                if stop:
                    return {"interrupted": True, "step": state["step"], "epoch": epoch}
            state["train_time"] += time.perf_counter() - t0
            _set_lr(opt, sched, None, 0)  # StepLR scales the un-warmed learning rate
            sched.step()
            record: dict[str, Any] = {"epoch": epoch, "event": "epoch_end"}
            if val_ds is not None:
                val = _accuracies(predict_split(model, val_ds, cfg.eval_batch_size, f"val {epoch}"))
                record["val_overall"] = val["overall"]
                if state["best_val"] is None or val["overall"] > state["best_val"]["overall"]:
                    state["best_val"], state["best_epoch"] = val, epoch
                    if acc.is_main_process:
                        save_model(model, out / MODEL_FILE)
            elif acc.is_main_process:
                save_model(model, out / MODEL_FILE)
            state["history"].append(record)
            log.log(record, step=state["step"])
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
        metrics["test"], test_recs = _evaluate_model(best, paths, paths.test_ann, qv, av, cfg.n_segments,
                                                     cfg.max_question_len, cfg.eval_batch_size, cfg.multiple_choice,
                                                     skip_bad=True)
        if acc.is_main_process:
            write_predictions(out / "test_predictions.jsonl", test_recs, av)
    if acc.is_main_process:
        write_json(out / "metrics.json", metrics)
        if metrics.get("test"):
            _plot_split(out / "accuracy.png", mcfg.kind, metrics["test"], "test", test_recs,
                        majority_answers([(q.type_key, str(q.answer)) for q in train_ds.questions]))
        elif metrics["val"]:
            plot_type_accuracies({mcfg.kind: metrics["val"]}, out / "accuracy.png",
                                 title=f"{mcfg.kind}: best validation accuracy ({metrics['val']['n_questions']} questions)")
    acc.wait_for_everyone()
    return metrics


def _first_question_per_video(questions: list) -> list:
    seen: set[str] = set()
    out = []
    for q in questions:
        key = getattr(q, "video_name", None) or q.video_id
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def _batch_with_negatives(ds: Any, local: list[int], videos: list[str] | None, seeds: list[int]) -> dict:
    """Collate ``local``; with ``videos`` (the training videos), add each row video's negative frames, drawn
    from the other videos with the row's seed (see :func:`sasrnet.data.negative_frames`)."""
    items = [ds[i] for i in local]
    if videos is None:
        return collate(items, seeds)
    rows: dict[str, int] = {}
    for it, sd in zip(items, seeds, strict=True):
        rows.setdefault(it["video_id"], sd)
    return collate(items, seeds, negative_frames(ds, list(rows), videos, [s + 1 for s in rows.values()]))


def pretrain_grounding(cfg: GroundingConfig, data: str | Path | DataPaths, out_dir: str | Path, *,
                       overwrite: bool = False) -> dict:
    """ST-AVQA's grounding pre-training: the match loss alone, one sample per training video, on an AVST
    network. Writes ``model.safetensors`` with only the parameters it trains (audio embedding, visual
    stem, grounding, match head, input statistics), for ``TrainConfig.init_from``; also config.json,
    log.jsonl and metrics.json (match accuracy of positive and negative frames on the validation videos)."""
    import torch

    from sasrnet.model import match_loss

    acc = build_accelerator(cfg.accelerator, project_dir=None)
    out = Path(out_dir)
    if acc.is_main_process:
        prepare_output_dir(out, overwrite=overwrite)
    acc.wait_for_everyone()
    seed_everything(cfg.seed)
    paths = data_paths(data)
    if paths.train_ann is None:
        raise MMError(f"no training annotations: expected {paths.features.parent}/annotations/avqa-train.json")
    train_q = load_questions(paths.train_ann, skip_bad=cfg.skip_bad)
    qv, av = build_vocabs(train_q)
    common = dict(n_segments=cfg.n_segments, max_question_len=cfg.max_question_len, skip_bad=cfg.skip_bad,
                  multiple_choice=False, cache=cfg.cache_features)
    train_ds = feature_dataset(_first_question_per_video(train_q), paths.features, qv, av, **common)
    val_ds = None
    if paths.val_ann is not None:
        val_q = _first_question_per_video(load_questions(paths.val_ann, skip_bad=True))
        val_ds = feature_dataset(val_q, paths.features, qv, av, **common, unseen_answers="wrong") if len(val_q) > 1 else None
    n = len(train_ds)
    if n < cfg.batch_size or cfg.batch_size % world_size():
        raise MMError(f"{paths.train_ann}: {n} training videos for batch_size={cfg.batch_size} on "
                      f"{world_size()} process(es): need at least one full batch, divisible by the processes")
    first = train_ds[0]
    mcfg = model_config("avst", cfg.size, {**cfg.arch, "visual_channels": int(first["visual"].shape[1]),
                                           "grid_h": int(first["visual"].shape[2]),
                                           "grid_w": int(first["visual"].shape[3]),
                                           "audio_dim": int(first["audio"].shape[-1]), "word_vocab": len(qv),
                                           "n_answers": len(av)})
    model = build_model(mcfg)
    if cfg.standardize_inputs:
        stats = input_statistics(train_ds)
        model.set_input_stats(stats["audio_mean"], stats["audio_std"], stats["visual_mean"], stats["visual_std"])
    names = [k for k in model.state_dict() if k.startswith(AVQAModel.GROUNDING_PREFIXES)]
    opt = adam([p for k, p in model.named_parameters() if k.startswith(AVQAModel.GROUNDING_PREFIXES)], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if acc.is_main_process:
        save_config(cfg, out / "config.json")
    model, opt = acc.prepare(model, opt)
    log = JsonlLogger(out / "log.jsonl")
    video_ids = [q.video_id for q in train_ds.questions]  # one question per video here
    val_videos = [q.video_id for q in val_ds.questions] if val_ds is not None else []
    step, history, t_train = 0, [], 0.0

    def val_accuracy() -> float | None:
        if val_ds is None:
            return None
        net = unwrap(model).eval()
        idx = list(range(len(val_ds)))
        hits = total = 0
        with torch.no_grad():
            for i in range(0, len(idx), 64):  # fixed negatives: validation video i's seed is i
                chunk = idx[i:i + 64]
                o = net.grounding_forward(to_device(_batch_with_negatives(val_ds, chunk, val_videos, chunk), acc.device))
                hits += int((o["match_pos"].argmax(-1) == 1).sum() + (o["match_neg"].argmax(-1) == 0).sum())
                total += 2 * o["match_pos"].shape[0] * o["match_pos"].shape[1]
        net.train()
        return round(100.0 * hits / total, 4)

    with progress_bar(n // cfg.batch_size * cfg.epochs, "pretrain grounding") as advance:
        for epoch in range(cfg.epochs):
            model.train()
            t0 = time.perf_counter()
            losses = []
            for gb in global_batches(n, cfg.batch_size, cfg.seed, epoch):
                local = shard_indices(gb)
                batch = to_device(_batch_with_negatives(train_ds, local, video_ids,
                                                        [(cfg.seed * 1_000_003 + step) * 1_000_003 + i for i in local]),
                                  acc.device)
                batch["grounding_only"] = True  # through the (possibly DDP-wrapped) module's forward
                loss = match_loss(model(batch))
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                _set_lr(opt, sched, step, cfg.warmup_steps)
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
                advance(1, epoch=epoch, loss=losses[-1])
                log.log({"epoch": epoch, "match": losses[-1]}, step=step)
            t_train += time.perf_counter() - t0
            _set_lr(opt, sched, None, 0)
            sched.step()
            record = {"epoch": epoch, "event": "epoch_end", "train_match_loss": round(sum(losses) / len(losses), 6),
                      "val_match_accuracy": val_accuracy()}
            history.append(record)
            log.log(record, step=step)
    state = unwrap(model).state_dict()
    if acc.is_main_process:
        from mmcore.io import save_safetensors

        save_safetensors(out / MODEL_FILE, {k: state[k] for k in names})
    metrics = {"model": "avst-grounding", "size": cfg.size, "train_videos": n, "steps": step,
               "val_match_accuracy": history[-1]["val_match_accuracy"] if history else None,
               "train_time_s": round(t_train, 2), "history": history}
    if acc.is_main_process:
        write_json(out / "metrics.json", metrics)
    acc.wait_for_everyone()
    return metrics


def _evaluate_model(model: AVQAModel, paths: DataPaths, ann: Path, qv: Any, av: Any, n_segments: int,
                    max_question_len: int, batch_size: int, multiple_choice: bool, skip_bad: bool,
                    ) -> tuple[dict, list[dict]]:
    """Accuracies over EVERY question of ``ann``: one whose answer never occurs in training is answered
    wrongly (counted in ``unseen_answers``), never dropped from the denominator."""
    qs = load_questions(ann, multiple_choice=multiple_choice, skip_bad=skip_bad)
    n_bad_ann = getattr(qs, "skipped", 0)
    if not qs:
        raise DataError(ann, "no questions to evaluate")
    ds = feature_dataset(qs, paths.features, qv, av, n_segments=n_segments, max_question_len=max_question_len,
                         skip_bad=skip_bad, multiple_choice=multiple_choice, unseen_answers="wrong")
    recs = predict_split(model, ds, batch_size, "eval")
    m = _accuracies(recs)
    m["unseen_answers"] = ds.n_unseen_answers
    m["skipped"] = {"annotations": n_bad_ann, "features": getattr(ds, "skipped", 0)}
    return m, recs


def write_predictions(path: Path, recs: list[dict], av: Any) -> None:
    """One JSON line per question: ids, text, template, type, true answer, predicted answer."""
    import json

    from mmcore.io import atomic_write_text

    lines = [json.dumps({"question_id": r["question_id"], "video_id": r["video_id"], "question": r["question"],
                         "template": r["template"], "type": r["type_key"], "answer": r["answer_text"],
                         "prediction": av.tokens[r["prediction"]]}) for r in recs]
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_trained(checkpoint_dir: str | Path) -> tuple[AVQAModel, dict, Any, Any]:
    """Model (eval mode), model.json, question and answer vocabularies of a training output dir."""
    from mmcore.data.music_avqa import Vocab

    d = Path(checkpoint_dir)
    if not d.is_dir():
        raise DataError(d, "checkpoint directory not found")
    if not (d / "model.json").is_file():
        raise DataError(d, "not an AVQA checkpoint directory (model.json missing; expected the --out of `mm avqa train`)")
    info = read_json(d / "model.json")
    if not isinstance(info, dict) or "model_config" not in info:
        raise DataError(d / "model.json", "missing key 'model_config'")
    mcfg = model_config_from_dict(info["model_config"])
    model = build_model(mcfg)
    if not (d / MODEL_FILE).is_file():
        raise DataError(d / MODEL_FILE, "weights not found (training did not finish an epoch?)")
    load_model_weights(model, d / MODEL_FILE)
    model.eval()
    return model, info, Vocab.load(d / "question_vocab.json"), Vocab.load(d / "answer_vocab.json")


def evaluate(
    checkpoint_dir: str | Path,
    data: str | Path | DataPaths,
    out_dir: str | Path,
    *,
    annotations: str | Path | None = None,
    batch_size: int = 64,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> dict:
    """Batched evaluation of a trained model on ``annotations`` (default: the data dir's test split).

    Writes ``config.json`` (what was evaluated, on what), ``metrics.json`` (per-type accuracies in the
    paper's keys, see :mod:`sasrnet.metrics`; every question counts, one whose answer never occurs in
    training as wrong, their number in ``unseen_answers``), ``predictions.jsonl`` and ``accuracy.png``.
    ``skip_bad`` skips and counts malformed annotations and bad feature files."""
    model, info, qv, av = load_trained(checkpoint_dir)
    paths = data_paths(data)
    ann = Path(annotations) if annotations is not None else paths.test_ann
    if ann is None:
        raise MMError("no evaluation annotations: the data dir has no annotations/avqa-test.json; pass --ann FILE")
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    write_json(out / "config.json", {"checkpoint": str(checkpoint_dir), "features": str(paths.features),
                                     "annotations": str(ann), "batch_size": batch_size, "skip_bad": skip_bad})
    t0 = time.perf_counter()
    m, recs = _evaluate_model(model, paths, ann, qv, av, info["n_segments"], info["max_question_len"], batch_size,
                              info.get("multiple_choice", False), skip_bad)
    elapsed = time.perf_counter() - t0
    metrics = {"model": info["kind"], "checkpoint": str(checkpoint_dir), "annotations": str(ann), **m,
               "eval_s_per_question": round(elapsed / max(len(recs), 1), 6)}
    write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.jsonl", recs, av)
    _plot_split(out / "accuracy.png", info["kind"], m, Path(ann).name, recs, info.get("majority_answers"))
    return metrics


def _plot_split(path: Path, kind: str, m: dict, split: str, recs: list[dict], majority: dict[str, str] | None) -> None:
    """accuracy.png of one evaluated split, with the majority-answer chance level when it is known."""
    chance = majority_answer_accuracy(majority, [(r["type_key"], r["answer_text"]) for r in recs]) if majority else None
    plot_type_accuracies({kind: m}, path, title=f"{kind}: {split} ({m['n_questions']} questions)", chance=chance)


def predict(checkpoint_dir: str | Path, video: str | Path, question: str, *, top_k: int = 5) -> dict:
    """Answer one question about one video: features are extracted on the fly with the encoders
    recorded in the training features' features.json."""
    import torch

    from sasrnet.video import video_item

    model, info, qv, av = load_trained(checkpoint_dir)
    if info.get("multiple_choice"):
        raise MMError(f"{checkpoint_dir}: a multiple-choice model needs answer choices; predict supports "
                      "Music-AVQA style models")
    words = [w for w in question.strip().rstrip("?？").split() if w]
    if not words:
        raise MMError("the question is empty")
    item = video_item(video, info, needs_av=info["kind"] != "blind")
    unknown = [w for w in words if w not in qv]
    batch = {"question": torch.tensor([qv.encode(words, info["max_question_len"])])}
    if "audio" in item:
        batch["audio"], batch["visual"] = item["audio"][None], item["visual"][None]
    with torch.no_grad():
        out = model(batch)
    probs = torch.softmax(out["logits"][0], -1)
    top = torch.topk(probs, min(top_k, len(probs)))
    res: dict[str, Any] = {
        "question": question,
        "video": str(video),
        "answer": av.tokens[int(top.indices[0])],
        "top": [{"answer": av.tokens[int(i)], "prob": round(float(p), 6)} for p, i in zip(top.values, top.indices, strict=True)],
        "unknown_words": unknown,
    }
    if "temporal_a" in out:
        res["temporal_attention"] = {"audio": [round(float(x), 6) for x in out["temporal_a"][0]],
                                     "visual": [round(float(x), 6) for x in out["temporal_v"][0]]}
    return res


__all__ = ["train", "pretrain_grounding", "evaluate", "predict", "load_trained", "predict_split", "rank", "is_main_process"]
