"""Generic CLIP contrastive training: used by ``mm clip pretrain`` and by CLIPErase's Retrain baseline.

    bundle = create_clip("mm-tiny-clip")
    model = train_clip(bundle, records, ClipTrainConfig(steps=500), out_dir="run/")

Data order comes from :func:`mmcore.distributed.global_batches` (depends only on seed and epoch) and
each process takes its round-robin shard; features are gathered with gradients, so 2 processes
optimise exactly the loss 1 process does. A checkpoint in ``OUT/checkpoint`` every
``checkpoint_every`` steps allows an exact resume: augmentation noise is keyed on (seed, step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.distributed import AcceleratorConfig

CHECKPOINT_DIR = "checkpoint"


@dataclass
class ClipTrainConfig:
    model: str = "mm-tiny-clip"
    pretrained: str | None = None  # open_clip tag or local checkpoint; None = random init
    dataset: str = "shapes"
    data_root: str | None = None
    caption_file: str = "auto"  # flickr30k: auto | karpathy | csv (which caption file when both exist)
    skip_bad: bool = False  # real data: skip (and count in metrics.json "skipped") unreadable items instead of failing
    n_train: int = 16000  # shapes: images generated; real data: cap on records used (0 = all)
    n_test: int = 1000
    steps: int = 400
    epochs: float = 0.0  # > 0 overrides steps: epochs * (n_train // batch_size)
    batch_size: int = 128  # global batch (over all processes)
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 30  # linear warm-up steps, then cosine decay to 0
    max_grad_norm: float = 0.0  # 0 = no clipping
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: bool = False  # pretrain: keep OUT/checkpoint after a finished run (it only serves --resume)
    eval_every: int = 100  # pretrain: zero-shot accuracy on the held-out set every N steps (0 = end only)
    log_every: int = 10
    multi_positive: bool = True  # identical captions within a batch count as positives
    # Image decoding workers for file-backed records (in-memory shapes are transformed as whole batches in
    # this process); None: from the CPU count (mmcore.data.streaming.default_num_workers), 0: this process.
    num_workers: int | None = None
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}"])  # zero-shot prompts
    accelerator: AcceleratorConfig = field(default_factory=AcceleratorConfig)


def total_steps(cfg: ClipTrainConfig, n_records: int) -> int:
    if cfg.epochs > 0:
        return max(1, math.ceil(cfg.epochs * max(1, n_records // cfg.batch_size)))
    return cfg.steps


def clip_loss(img_feats, txt_feats, logit_scale, texts: Sequence[str] | None = None):
    """Symmetric InfoNCE over normalised features. With ``texts``, pairs whose captions are identical
    are all positives (soft targets spread evenly over them) instead of only the diagonal: a small
    caption vocabulary repeats within a batch, and pushing such duplicates apart is wrong."""
    import torch
    import torch.nn.functional as F

    logits = logit_scale * img_feats @ txt_feats.T
    n = logits.shape[0]
    if texts is None:
        target = torch.arange(n, device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    if len(texts) != n:
        raise ValueError(f"clip_loss: {len(texts)} texts for a batch of {n}")
    ids: dict[str, int] = {}
    caption_id = torch.tensor([ids.setdefault(t, len(ids)) for t in texts], device=logits.device)
    pos = (caption_id[:, None] == caption_id[None, :]).float()  # symmetric, diagonal = 1
    target = pos / pos.sum(dim=1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


# --------------------------------------------------------------------------- data


class _Batches:
    """Global batch of step ``s`` → this process's images and the global batch's captions."""

    def __init__(self, records: Sequence[Any], preprocess: Any, batch_size: int, seed: int, num_workers: int):
        import numpy as np
        import torch

        from mmcore.data.records import ImageTextDataset
        from mmcore.encoders.clip import TensorPreprocess

        self.records = list(records)
        self.n = len(self.records)
        self.batch_size = batch_size
        self.seed = seed
        self.preprocess = preprocess
        self.captions = ImageTextDataset(self.records, None, caption="random", seed=seed)
        self._epoch_cache: tuple[int, list[list[int]]] | None = None
        # In-memory images + tensor preprocessing: stack once, then index and transform whole batches.
        self.stacked = None
        if isinstance(preprocess, TensorPreprocess) and all(r.image is not None for r in self.records):
            arr = np.stack([np.asarray(r.image, dtype=np.uint8) for r in self.records])
            self.stacked = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        else:
            from mmcore.data.loading import resolve_workers

            self.dataset = ImageTextDataset(self.records, preprocess, caption="first", seed=seed)
            self.num_workers = resolve_workers(num_workers, self.n)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def global_batch(self, step: int) -> tuple[int, list[int]]:
        from mmcore.distributed import global_batches

        epoch, b = divmod(step, self.steps_per_epoch)
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, global_batches(self.n, self.batch_size, self.seed, epoch))
        return epoch, self._epoch_cache[1][b]

    def texts(self, epoch: int, indices: Sequence[int]) -> list[str]:
        self.captions.set_epoch(epoch)
        return [self.captions.caption_for(i) for i in indices]

    def images(self, step: int, rank: int, world: int, gb: list[int]):
        import torch

        indices = gb[rank::world]
        if self.stacked is not None:
            # Augmentation offsets are drawn for the whole global batch, keyed on (seed, step), and each
            # process takes its images' share: identical to one process, and exact on resume.
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            dy, dx = self.preprocess.random_shifts(len(gb), g)
            return self.preprocess.batch(self.stacked[indices], shifts=(dy[rank::world], dx[rank::world]))
        return torch.stack([self.dataset[i]["image"] for i in indices])

    def loader(self, start_step: int, end_step: int, rank: int, world: int):
        """Yields (step, epoch, local images, global texts in gather order)."""
        if self.stacked is not None or self.num_workers == 0:
            for step in range(start_step, end_step):
                yield self._item(step, rank, world)
            return
        import torch

        shards = [self._local(s, rank, world) for s in range(start_step, end_step)]
        dl = torch.utils.data.DataLoader(self.dataset, batch_sampler=shards, num_workers=self.num_workers,
                                         pin_memory=torch.cuda.is_available())
        for step, batch in zip(range(start_step, end_step), dl, strict=True):
            epoch, gb = self.global_batch(step)
            yield step, epoch, batch["image"], self.texts(epoch, _gather_order(gb, world))

    def _local(self, step: int, rank: int, world: int) -> list[int]:
        return self.global_batch(step)[1][rank::world]

    def _item(self, step: int, rank: int, world: int):
        epoch, gb = self.global_batch(step)
        return step, epoch, self.images(step, rank, world, gb), self.texts(epoch, _gather_order(gb, world))


def _gather_order(gb: list[int], world: int) -> list[int]:
    """Global batch indices in the order gather_with_grad concatenates the round-robin shards."""
    return [i for r in range(world) for i in gb[r::world]]


class _TokenCache:
    """Tokenise each distinct caption once (captions repeat a lot in small-vocabulary data)."""

    def __init__(self, tokenizer: Any, max_size: int = 200_000):
        self.tokenizer = tokenizer
        self.cache: dict[str, Any] = {}
        self.max_size = max_size

    def __call__(self, texts: Sequence[str]):
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            if len(self.cache) + len(new) > self.max_size:
                self.cache.clear()
            for t, row in zip(new, self.tokenizer(new), strict=True):
                self.cache[t] = row
        return torch.stack([self.cache[t] for t in texts])


# --------------------------------------------------------------------------- training


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    # As open_clip: no decay on gains, biases, norms, embeddings of positions and the logit scale.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def train_clip(
    bundle: Any,
    records: Sequence[Any],
    cfg: ClipTrainConfig,
    out_dir: str | Path | None = None,
    accelerator: Any = None,
    resume: bool = False,
    desc: str = "train",
    on_eval: Callable[[Any, int], dict[str, float]] | None = None,
) -> Any:
    """Contrastively train ``bundle.model`` on image–text ``records``; returns the (unwrapped) model.

    ``on_eval(model, step)`` (main process) is called every ``cfg.eval_every`` steps and at the end;
    what it returns is logged. With ``out_dir``: ``log.jsonl`` and resumable ``checkpoint/``.
    """
    import torch

    from mmcore.checkpoint import load_training_state, save_training_state, unwrap
    from mmcore.distributed import (
        JsonlLogger,
        build_accelerator,
        gather_with_grad,
        progress_bar,
        seed_everything,
    )
    from mmcore.errors import MMError
    from mmcore.optim import adam

    out = Path(out_dir) if out_dir is not None else None
    acc = accelerator or build_accelerator(cfg.accelerator, project_dir=out)
    world, rank = acc.num_processes, acc.process_index
    if cfg.batch_size % world:
        raise MMError(f"batch_size {cfg.batch_size} must be divisible by the number of processes ({world})")
    if len(records) < cfg.batch_size:
        raise MMError(f"{len(records)} training records is fewer than one batch (batch_size {cfg.batch_size})")
    seed_everything(cfg.seed)
    steps = total_steps(cfg, len(records))

    model = bundle.model
    if world > 1:  # BatchNorm (ResNet towers) must see the global batch for 2 processes to equal 1
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.train()
    opt = adam(_param_groups(model, cfg.weight_decay), lr=cfg.lr, decoupled=True, betas=(0.9, 0.98), eps=1e-6)
    # The scheduler stays outside accelerate.prepare: its wrapper would step it once per process.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup, steps))
    model, opt = acc.prepare(model, opt)

    start = 0
    ckpt = out / CHECKPOINT_DIR if out is not None else None
    if resume and ckpt is not None and (ckpt / "state.json").is_file():
        start = load_training_state(ckpt, unwrap(model), opt, sched)["step"]
    logger = JsonlLogger(out / "log.jsonl", acc) if out is not None else None
    if logger is not None and acc.is_main_process and start == 0 and out is not None:
        (out / "log.jsonl").unlink(missing_ok=True)

    batches = _Batches(records, bundle.preprocess_train, cfg.batch_size, cfg.seed, cfg.num_workers)
    tokens = _TokenCache(bundle.tokenizer)
    device = acc.device

    def evaluate(step: int) -> None:
        if on_eval is None:
            return
        if acc.is_main_process:
            metrics = on_eval(unwrap(model), step)
            if logger is not None:
                logger.log({"event": "eval", **metrics}, step=step)
        unwrap(model).train()
        acc.wait_for_everyone()

    t0 = time.perf_counter()
    if start == 0 and cfg.eval_every > 0:
        evaluate(0)
    with progress_bar(steps - start, desc) as advance:
        for step, epoch, images, texts in batches.loader(start, steps, rank, world):
            per = len(texts) // world  # this shard's captions: the rank-th block of the gather order
            toks = tokens(texts[rank * per : (rank + 1) * per])
            with acc.autocast():
                img, txt, scale = model(images.to(device), toks.to(device))
                img_all, txt_all = gather_with_grad(img), gather_with_grad(txt)
                loss = clip_loss(img_all.float(), txt_all.float(), scale.float(), texts if cfg.multi_positive else None)
            acc.backward(loss)
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():  # as open_clip: keep the temperature in a sane range
                unwrap(model).logit_scale.clamp_(0, math.log(100))
            done = step + 1
            if logger is not None and (done % cfg.log_every == 0 or done == steps):
                logger.log(
                    {"loss": loss.item(), "lr": sched.get_last_lr()[0], "logit_scale": scale.item(), "epoch": epoch,
                     "train_seconds": round(time.perf_counter() - t0, 3)},
                    step=done,
                )
            advance(1, loss=loss.item())
            if ckpt is not None and cfg.checkpoint_every > 0 and (done % cfg.checkpoint_every == 0 or done == steps):
                if acc.is_main_process:
                    save_training_state(ckpt, model, opt, sched, step=done, extra={"total_steps": steps})
                acc.wait_for_everyone()
            if cfg.eval_every > 0 and done % cfg.eval_every == 0 and done != steps:
                evaluate(done)
    if start < steps:
        evaluate(steps)
    model = unwrap(model)
    model.eval()
    return model


# --------------------------------------------------------------------------- pretrain


def _load(cfg: ClipTrainConfig, split: str, n: int, image_size: int):
    from mmcore.data.registry import load_image_text

    if cfg.dataset.lower() == "shapes":
        return load_image_text("shapes", split=split, n=n, seed=cfg.seed, image_size=image_size)
    kw = {"skip_bad": True} if cfg.skip_bad else {}
    data = load_image_text(cfg.dataset, root=cfg.data_root, split=split, caption_file=cfg.caption_file, **kw)
    data = data.subset(range(min(n, len(data)))) if n > 0 else data
    return data.drop_unreadable()[0] if cfg.skip_bad else data


def pretrain(cfg: ClipTrainConfig, out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train a CLIP from ``cfg`` and write OUT/model.safetensors, clip_config.json, config.json,
    metrics.json (``zero_shot_accuracy`` on held-out data with ``cfg.templates``, ``wall_seconds``)."""
    t_start = time.perf_counter()
    from mmcore.config import save_config
    from mmcore.distributed import build_accelerator, seed_everything
    from mmcore.encoders.clip import count_parameters, create_clip, save_clip
    from mmcore.eval.zeroshot import zero_shot_eval
    from mmcore.io import prepare_output_dir, write_json

    out = prepare_output_dir(out_dir, overwrite=overwrite, resume=resume)
    acc = build_accelerator(cfg.accelerator, project_dir=out)
    if acc.is_main_process:
        save_config(cfg, out / "config.json")
    seed_everything(cfg.seed)
    bundle = create_clip(cfg.model, cfg.pretrained, device=str(acc.device))
    train = _load(cfg, "train", cfg.n_train, bundle.image_size)
    test = _load(cfg, "test", cfg.n_test, bundle.image_size)
    t_data = time.perf_counter() - t_start

    def on_eval(model: Any, step: int) -> dict[str, float]:
        r = zero_shot_eval(model, bundle.tokenizer, test, bundle.preprocess_eval, templates=cfg.templates,
                           batch_size=500, device=acc.device)
        return {"zero_shot_accuracy": r["accuracy"], "wall_seconds": round(time.perf_counter() - t_start, 3)}

    t_train = time.perf_counter()
    model = train_clip(bundle, train.records, cfg, out, acc, resume=resume, desc="pretrain CLIP",
                       on_eval=on_eval if cfg.eval_every > 0 else None)
    train_seconds = time.perf_counter() - t_train
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
        "wall_seconds": round(time.perf_counter() - t_start, 3),
    }
    if acc.is_main_process:
        save_clip(model, out, bundle.model_name, bundle.model_cfg)
        write_json(out / "metrics.json", metrics)
        if not cfg.keep_checkpoints:  # the run is complete: the resumable state is dead weight now
            import shutil

            shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    acc.end_training()
    return metrics


#: ``evaluate_clip`` on synthetic shapes: images generated when ``n`` is not given.
SHAPES_EVAL_N = 1000


def evaluate_clip(
    model: str | Path,
    pretrained: str | None,
    dataset: str,
    *,
    data_root: str | Path | None = None,
    split: str = "test",
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    templates: Sequence[str] | None = None,
    skip_bad: bool = False,
    caption_file: str = "auto",
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Zero-shot accuracy (datasets with class names) and retrieval Recall@K of a saved dir or a named model.

    ``n``: shapes: images generated (None: :data:`SHAPES_EVAL_N`); real data: evaluate at most the
    first ``n`` records (None or 0: the whole split). ``skip_bad``: unreadable items (missing or
    undecodable images, malformed annotation lines) are skipped and counted in ``skipped`` instead
    of stopping the run; every image file is then decoded once before the evaluation to find them.
    ``caption_file``: flickr30k's caption file (auto | karpathy | csv). ``num_workers``: image
    decoding workers (None: from the CPU count). Streamed datasets (wds) are read once as a stream
    of shards, never as a list of records."""
    from mmcore.data.registry import STREAMED_DATASETS, load_image_text, open_image_text_stream
    from mmcore.encoders.clip import load_clip
    from mmcore.errors import ImageReadError, MMError
    from mmcore.eval.retrieval import retrieval_eval
    from mmcore.eval.zeroshot import zero_shot_eval

    if n is not None and n < 0:
        raise MMError(f"--n must be positive (or 0 for the whole split), got {n}")
    bundle = load_clip(model, pretrained)
    if dataset.lower() in STREAMED_DATASETS:
        from mmcore.eval.stream import stream_eval

        stream = open_image_text_stream(dataset, data_root, split, skip_bad=skip_bad, limit=n or None,
                                        caption_file=caption_file)
        res = stream_eval(bundle.model, bundle.tokenizer, stream, bundle.preprocess_eval, templates=templates,
                          batch_size=batch_size, device=next(bundle.model.parameters()).device,
                          num_workers=num_workers)
        return {"model": bundle.model_name, "dataset": stream.name, **res}
    if dataset.lower() == "shapes":
        if n == 0:
            raise MMError("shapes: --n is the number of images to generate; give at least 1")
        data = load_image_text("shapes", split=split, n=SHAPES_EVAL_N if n is None else n, seed=seed,
                               image_size=bundle.image_size, caption_file=caption_file)
    else:
        kw: dict[str, Any] = {"caption_file": caption_file, "limit": n or None}
        if skip_bad:
            kw["skip_bad"] = True
        data = load_image_text(dataset, root=data_root, split=split, **kw)
    if skip_bad:
        data, _ = data.drop_unreadable()
    if not len(data):
        raise MMError(f"{dataset}/{split}: no records left to evaluate" + (f" ({data.skipped} skipped)" if data.skipped else ""))
    metrics: dict[str, Any] = {"model": bundle.model_name, "dataset": data.name, "n": len(data), "skipped": data.skipped}
    try:
        if data.classnames and all(r.label is not None for r in data.records):
            zs = zero_shot_eval(bundle.model, bundle.tokenizer, data, bundle.preprocess_eval, templates=templates,
                                batch_size=batch_size, num_workers=num_workers, desc="zero-shot: encode images")
            metrics["zero_shot_accuracy"] = zs["accuracy"]
            metrics["per_class"] = zs["per_class"]
        if any(r.captions for r in data.records):
            metrics.update(retrieval_eval(bundle.model, bundle.tokenizer, data, bundle.preprocess_eval,
                                          batch_size=batch_size, num_workers=num_workers,
                                          desc="retrieval: encode images"))
    except ImageReadError as e:
        if skip_bad:
            raise
        raise ImageReadError(e.path, f"{e.problem} (pass skip_bad=True / --skip-bad to skip unreadable items)") from None
    return metrics
