"""ST-AVQA's grounding pre-training (the match task alone, one sample per training video), whose
weights initialise AVST and SaSR-Net through ``TrainConfig.init_from``."""

from __future__ import annotations

import time
from pathlib import Path

from mmcore.checkpoint import unwrap
from mmcore.distributed import (
    build_accelerator,
    global_batches,
    progress_bar,
    seed_everything,
    shard_indices,
    world_size,
)
from mmcore.errors import MMError
from mmcore.optim import adam
from mmcore.run import TrainingRun

from sasrnet.config import GroundingConfig, model_config
from sasrnet.data import (
    DataPaths,
    build_vocabs,
    data_paths,
    feature_dataset,
    input_statistics,
    load_questions,
    to_device,
)
from sasrnet.model import AVQAModel, build_model
from sasrnet.recipes.evaluate import MODEL_FILE
from sasrnet.recipes.train import batch_with_negatives, set_lr


def _first_question_per_video(questions: list) -> list:
    seen: set[str] = set()
    out = []
    for q in questions:
        key = getattr(q, "video_name", None) or q.video_id
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def pretrain_grounding(cfg: GroundingConfig, data: str | Path | DataPaths, out_dir: str | Path, *,
                       overwrite: bool = False) -> dict:
    """ST-AVQA's grounding pre-training: the match loss alone, one sample per training video, on an AVST
    network. Writes ``model.safetensors`` with only the parameters it trains (audio embedding, visual
    stem, grounding, match head, input statistics), for ``TrainConfig.init_from``; also config.json,
    log.jsonl and metrics.json (match accuracy of positive and negative frames on the validation videos)."""
    import torch

    from sasrnet.model import match_loss

    acc = build_accelerator(cfg.accelerator, project_dir=None)
    run = TrainingRun.create(out_dir, acc, overwrite=overwrite)
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
    run.save_config(cfg)
    model, opt = acc.prepare(model, opt)
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
                o = net.grounding_forward(to_device(batch_with_negatives(val_ds, chunk, val_videos, chunk), acc.device))
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
                batch = to_device(batch_with_negatives(train_ds, local, video_ids,
                                                        [(cfg.seed * 1_000_003 + step) * 1_000_003 + i for i in local]),
                                  acc.device)
                batch["grounding_only"] = True  # through the (possibly DDP-wrapped) module's forward
                loss = match_loss(model(batch))
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                set_lr(opt, sched, step, cfg.warmup_steps)
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
                advance(1, epoch=epoch, loss=losses[-1])
                run.log({"epoch": epoch, "match": losses[-1]}, step=step)
            t_train += time.perf_counter() - t0
            set_lr(opt, sched, None, 0)
            sched.step()
            record = {"epoch": epoch, "event": "epoch_end", "train_match_loss": round(sum(losses) / len(losses), 6),
                      "val_match_accuracy": val_accuracy()}
            history.append(record)
            run.log(record, step=step)
    state = unwrap(model).state_dict()
    if run.writes:
        from mmcore.io import save_safetensors

        save_safetensors(run.out / MODEL_FILE, {k: state[k] for k in names})
    metrics = {"model": "avst-grounding", "size": cfg.size, "train_videos": n, "steps": step,
               "val_match_accuracy": history[-1]["val_match_accuracy"] if history else None,
               "train_time_s": round(t_train, 2), "history": history}
    run.write_metrics(metrics)
    run.finish()
    return metrics
