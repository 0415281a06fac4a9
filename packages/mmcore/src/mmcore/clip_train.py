"""Generic CLIP contrastive training: used by ``mm clip pretrain`` (:mod:`mmcore.recipes.clip_pretrain`)
and by CLIPErase's Retrain baseline.

    bundle = create_clip("mm-tiny-clip")
    model = train_clip(bundle, records, ClipTrainConfig(steps=500), TrainingRun("run/"))

The loss of a step is an :class:`Objective`: :class:`ContrastiveObjective` (CLIP's, the default) or another family's
(BLIP's ITC + ITM, :class:`mmcore.blip_train.BlipObjective`); the loop around it is the same.

Data order comes from :func:`mmcore.distributed.global_batches` (depends only on seed and epoch) and
each process takes its round-robin shard; features are gathered with gradients, so 2 processes
optimise exactly the loss 1 process does. With a :class:`~mmcore.run.TrainingRun`, a checkpoint in ``OUT/checkpoint`` every
``checkpoint_every`` steps allows an exact resume: augmentation noise is keyed on (seed, step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mmcore.distributed import AcceleratorConfig, gathered_order

if TYPE_CHECKING:
    from mmcore.run import TrainingRun


@dataclass
class ClipTrainConfig:
    model: str = "mm-tiny-clip"
    pretrained: str | None = None  # open_clip tag or local checkpoint; None = random init
    dataset: str = "shapes"
    data_root: str | None = None
    caption_file: str = "auto"  # flickr30k: auto | karpathy | csv (which caption file when both exist)
    skip_bad: bool = False  # real data: skip (and count in metrics.json "skipped") unreadable items instead of failing
    n_train: int = 16000  # shapes: images generated; real data: cap on records used (0 = all)
    # shapes: what a label names, "shape" (10 classes) or "shape_color" (100: "red circle", ...; mmcore.data.shapes)
    shapes_classes: str = "shape"
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
    # this process); None: from the CPU count (mmcore.data.loading.default_num_workers), 0: this process.
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


# --------------------------------------------------------------------------- objectives


@dataclass
class StepBatch:
    """What an :class:`Objective` sees of one optimizer step besides this process's images and tokens: the
    global batch's captions and record indices, both in the order all-gathered shards come back in, and this
    process's place (its shard is the ``rank``-th block of ``len(texts) // world``)."""

    step: int
    texts: list[str]
    indices: list[int]
    rank: int
    world: int

    def local(self, items: Sequence[Any]) -> list[Any]:
        per = len(items) // self.world
        return list(items[self.rank * per : (self.rank + 1) * per])


class Objective(Protocol):
    """``objective(model, images, tokens, batch) -> (loss, logit_scale, logs)``: one step's loss from the model
    (called once, so a DDP-wrapped model syncs its gradients), the logit scale it used, and scalar tensors to log."""

    def __call__(self, model: Any, images: Any, tokens: Any, batch: StepBatch) -> tuple[Any, Any, dict[str, Any]]: ...


@dataclass
class ContrastiveObjective:
    """CLIP's symmetric InfoNCE (:func:`clip_loss`) over features gathered from every process."""

    multi_positive: bool = True

    def __call__(self, model: Any, images: Any, tokens: Any, batch: StepBatch) -> tuple[Any, Any, dict[str, Any]]:
        from mmcore.distributed import gather_with_grad

        img, txt, scale = model(images, tokens)
        img_all, txt_all = gather_with_grad(img), gather_with_grad(txt)
        loss = clip_loss(img_all.float(), txt_all.float(), scale.float(), batch.texts if self.multi_positive else None)
        return loss, scale, {}


# --------------------------------------------------------------------------- data


class _Batches:
    """Global batch of step ``s`` → this process's images and the global batch's captions."""

    def __init__(self, records: Sequence[Any], preprocess: Any, batch_size: int, seed: int, num_workers: int):
        import numpy as np
        import torch

        from mmcore.data.records import ImageTextDataset
        from mmcore.distributed import StepBatches
        from mmcore.encoders.clip import TensorPreprocess

        self.records = list(records)
        self.n = len(self.records)
        self.seed = seed
        self.preprocess = preprocess
        self.captions = ImageTextDataset(self.records, None, caption="random", seed=seed)
        self.steps = StepBatches(self.n, batch_size, seed)
        # In-memory images + tensor preprocessing: stack once, then index and transform whole batches.
        self.stacked = None
        if isinstance(preprocess, TensorPreprocess) and all(r.image is not None for r in self.records):
            arr = np.stack([np.asarray(r.image, dtype=np.uint8) for r in self.records])
            self.stacked = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        else:
            from mmcore.data.loading import resolve_workers

            self.dataset = ImageTextDataset(self.records, preprocess, caption="first", seed=seed)
            self.num_workers = resolve_workers(num_workers, self.n)

    def global_batch(self, step: int) -> tuple[int, list[int]]:
        return self.steps.epoch(step), self.steps.at(step)

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
        from mmcore.data.loading import loader_generator

        # Workers' augmentation seeds from (seed, start step), not from the global RNG.
        dl = torch.utils.data.DataLoader(self.dataset, batch_sampler=shards, num_workers=self.num_workers,
                                         pin_memory=torch.cuda.is_available(),
                                         generator=loader_generator(self.seed * 1_000_003 + start_step))
        for step, batch in zip(range(start_step, end_step), dl, strict=True):
            epoch, gb = self.global_batch(step)
            yield step, epoch, batch["image"], self.texts(epoch, gathered_order(gb, world))

    def _local(self, step: int, rank: int, world: int) -> list[int]:
        return self.global_batch(step)[1][rank::world]

    def _item(self, step: int, rank: int, world: int):
        epoch, gb = self.global_batch(step)
        return step, epoch, self.images(step, rank, world, gb), self.texts(epoch, gathered_order(gb, world))


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


def train_clip(
    bundle: Any,
    records: Sequence[Any],
    cfg: ClipTrainConfig,
    run: TrainingRun | None = None,
    accelerator: Any = None,
    desc: str = "train",
    on_eval: Callable[[Any, int], dict[str, float]] | None = None,
    objective: Objective | None = None,
) -> Any:
    """Contrastively train ``bundle.model`` on image–text ``records``; returns the (unwrapped) model.

    ``on_eval(model, step)`` (main process) is called every ``cfg.eval_every`` steps and at the end;
    what it returns is logged. With a ``run`` that has a directory: ``log.jsonl`` and a resumable
    ``checkpoint/`` (a resuming run continues from it). ``accelerator``: None: the run's, else one
    built from ``cfg.accelerator``. ``objective``: the step's loss (None: :class:`ContrastiveObjective`
    with ``cfg.multi_positive``); what its logs hold is logged with the loss.
    """
    import torch

    from mmcore.checkpoint import unwrap
    from mmcore.distributed import build_accelerator, progress_bar, seed_everything
    from mmcore.errors import MMError
    from mmcore.optim import adam, lr_schedule
    from mmcore.run import TrainingRun

    run = run or TrainingRun(None)
    acc = accelerator or run.accelerator or build_accelerator(cfg.accelerator, project_dir=run.out)
    run.accelerator = acc
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
    sched = lr_schedule(opt, steps, warmup=cfg.warmup)  # linear warm-up, then cosine decay to 0
    model, opt = acc.prepare(model, opt)

    start, _ = run.resume(unwrap(model), opt, sched)
    if start == 0:
        run.clear_log()  # the lines of an attempt killed before its first checkpoint

    batches = _Batches(records, bundle.preprocess_train, cfg.batch_size, cfg.seed, cfg.num_workers)
    tokens = _TokenCache(bundle.tokenizer)
    device = acc.device
    objective = objective or ContrastiveObjective(cfg.multi_positive)

    def evaluate(step: int) -> None:
        if on_eval is None:
            return
        if acc.is_main_process:
            run.log({"event": "eval", **on_eval(unwrap(model), step)}, step=step)
        unwrap(model).train()
        acc.wait_for_everyone()

    t0 = time.perf_counter()
    if start == 0 and cfg.eval_every > 0:
        evaluate(0)
    with progress_bar(steps - start, desc) as advance:
        for step, epoch, images, texts in batches.loader(start, steps, rank, world):
            batch = StepBatch(step, texts, gathered_order(batches.global_batch(step)[1], world), rank, world)
            toks = tokens(batch.local(texts))  # this shard's captions: the rank-th block of the gather order
            with acc.autocast():
                loss, scale, extra = objective(model, images.to(device), toks.to(device), batch)
            acc.backward(loss)
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():  # as open_clip: keep the temperature in a sane range
                unwrap(model).logit_scale.clamp_(0, math.log(100))
            done = step + 1
            if done % cfg.log_every == 0 or done == steps:
                run.log(
                    {"loss": loss.item(), **{k: float(v) for k, v in extra.items()}, "lr": sched.get_last_lr()[0],
                     "logit_scale": scale.item(), "epoch": epoch, "train_seconds": round(time.perf_counter() - t0, 3)},
                    step=done,
                )
            advance(1, loss=loss.item())
            if cfg.checkpoint_every > 0 and (done % cfg.checkpoint_every == 0 or done == steps):
                run.checkpoint(model, opt, sched, done, {"total_steps": steps})
            if cfg.eval_every > 0 and done % cfg.eval_every == 0 and done != steps:
                evaluate(done)
    if start < steps:
        evaluate(steps)
    model = unwrap(model)
    model.eval()
    return model
