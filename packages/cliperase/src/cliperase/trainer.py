"""One training loop for every unlearning method that trains by steps (:mod:`cliperase.methods`: a method
gives its loss and what the loss needs; Retrain and SLUG, which do not train by steps, have their own).

Each step draws one global forget batch and one global retain batch. Batches depend only on
(seed, step) (:class:`mmcore.distributed.StepBatches`), each process encodes its round-robin
shard, and the features are gathered with gradients, so the loss is the global-batch loss on any
number of processes and a resumed run sees exactly the batches of an uninterrupted one.
Forget and retain samples go through one forward pass (the paper: "forget and retain samples may
share one batch, split by a flag"), which also keeps DDP to one forward per backward.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import torch
from mmcore.checkpoint import unwrap
from mmcore.data.loading import image_batches
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.distributed import StepBatches, gather_with_grad, gathered_order, progress_bar
from mmcore.errors import MMError
from mmcore.optim import adam, lr_schedule
from mmcore.run import TrainingRun
from torch import nn

from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit
from cliperase.step_batches import MergedSteps, StepBatch, StreamSteps, TextOf
from cliperase.step_types import Feats, StepFeats, UnlearnResult
from cliperase.templates import config_templates
from cliperase.training import pair_text, train_mode


class DualEncoder(nn.Module):
    """Wraps a CLIP model so that one ``forward`` returns un-normalised image and text features and
    the logit scale (``exp``); DDP then sees a single forward per step."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        img = self.clip.encode_image(images, normalize=False)
        txt = self.clip.encode_text(tokens, normalize=False)
        return img, txt, self.clip.logit_scale.exp()


class StepImages:
    """This process's images of every step, decoded per step in DataLoader workers.

    Per-step decoding through a worker pool, not an LRU cache: the batches of every step are known in
    advance (they depend only on seed and step), so the workers decode the next steps' images while the
    model trains on this one, and memory holds the prefetched batches whatever the dataset's size. An LRU
    with a byte budget would help only when D_r fits in that budget (CIFAR-100's 29 GB does not), and
    uniform random batches over a larger set mostly miss it."""

    def __init__(self, parts: list[tuple[list[ImageTextRecord], StepBatches]], transform: Any, rank: int,
                 world: int, num_workers: int | None = None, pin_memory: bool = False):
        self.records: list[ImageTextRecord] = [r for recs, _ in parts for r in recs]
        self.offsets = [0]
        for recs, _ in parts[:-1]:
            self.offsets.append(self.offsets[-1] + len(recs))
        self.streams = [stream for _, stream in parts]
        self.transform, self.rank, self.world = transform, rank, world
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def local(self, step: int) -> list[list[int]]:
        """Per part, this process's indices (into that part's records) of step ``step``."""
        return [stream.at(step)[self.rank::self.world] for stream in self.streams]

    def steps(self, start: int, end: int) -> Iterator[torch.Tensor]:
        """The images of steps ``start .. end - 1``: per step, the parts' local images concatenated."""
        plan = [[off + i for off, idx in zip(self.offsets, self.local(step), strict=True) for i in idx]
                for step in range(start, end)]
        yield from image_batches(self.records, self.transform, plan, num_workers=self.num_workers,
                                 pin_memory=self.pin_memory)


class RecordSteps:
    """Steps over record lists: each part's global batch of a step comes from its :class:`StepBatches` and
    each process decodes its round-robin shard (:class:`StepImages`, DataLoader workers)."""

    def __init__(self, parts: dict[str, tuple[StepBatches, ImageTextData]], step_images: StepImages, text_of: TextOf,
                 world: int):
        self.parts, self.step_images, self.text_of, self.world = parts, step_images, text_of, world

    def steps(self, start: int, end: int) -> Iterator[StepBatch]:
        for step, images in zip(range(start, end), self.step_images.steps(start, end), strict=True):
            local_idx = dict(zip(self.parts, self.step_images.local(step), strict=True))
            local, texts, back = {}, {}, {}
            for key, (stream, data) in self.parts.items():
                local[key] = [self.text_of(key, data, data.records[i], i, step) for i in local_idx[key]]
                batch = stream.at(step)
                # Gathered rows come rank by rank; put them back in global batch order so that
                # order-dependent terms (MultiDelete's mismatched pairs) match a 1-process run.
                pos = {idx: p for p, idx in enumerate(gathered_order(batch, self.world))}
                back[key] = torch.tensor([pos[i] for i in batch])
                texts[key] = [self.text_of(key, data, data.records[i], i, step) for i in batch]
            yield StepBatch(images, local, texts, back)


class RowSubsetEmbedding(nn.Module):
    """An ``nn.Embedding`` whose trainable weight is only the rows ``ids`` (the tokens a run will feed).

    A dense embedding gradient is a vocabulary-sized tensor allocated and zero-filled every step, and Adam
    then walks every row: for the tiny CLIP's 49408 x 128 table that was ~12 % of an unlearning step, for
    ~100 distinct tokens. Rows that never receive a gradient never move under Adam without weight decay,
    so training only the used rows is the same optimisation. :meth:`merged` writes them back."""

    def __init__(self, emb: nn.Embedding, ids: torch.Tensor):
        super().__init__()
        # Plain tensors, not buffers: constants that DDP must not broadcast every step.
        self.ids = torch.unique(ids.to(emb.weight.device))
        self.full = emb.weight.detach().clone()
        self.lut = torch.full((emb.num_embeddings,), -1, dtype=torch.long, device=self.ids.device)
        self.lut[self.ids] = torch.arange(len(self.ids), device=self.ids.device)
        self.rows = nn.Parameter(emb.weight.detach()[self.ids].clone())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        local = self.lut[tokens]
        if bool((local < 0).any()):
            raise MMError("a token outside the planned unlearning texts reached the embedding")
        return nn.functional.embedding(local, self.rows)

    def merged(self) -> nn.Embedding:
        weight = self.full.clone()
        weight[self.ids] = self.rows.detach()
        return nn.Embedding.from_pretrained(weight, freeze=False)


def _row_subset_applies(emb: Any, cfg: UnlearnConfig) -> bool:
    # weight decay would move unused rows too (Adam's L2 term, AdamW's decay)
    return isinstance(emb, nn.Embedding) and emb.weight.requires_grad and cfg.weight_decay == 0


def _make_optimizer(cfg: UnlearnConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return adam(params, cfg.lr, weight_decay=cfg.weight_decay, decoupled=cfg.optimizer == "adamw")


def _gathered(x: torch.Tensor, back: torch.Tensor | None) -> torch.Tensor:
    """All processes' rows (with gradients), in global batch order when ``back`` is given."""
    g = gather_with_grad(x)
    return g if back is None else g[back]


def _retain_stream(split: ForgetSplit, cfg: UnlearnConfig, world: int) -> dict[str, dict[str, Any]]:
    """D_r of a streamed split as a shard stream: every training shard's samples but the forget ids; each
    process draws ``min(batch_size, n) // world`` of them per step."""
    from mmcore.data.wds.shard_sampler import IdFilter

    st = split.stream
    assert st is not None
    local = min(cfg.batch_size, st.n_retain) // world
    if local == 0:
        raise MMError(f"retain set has {st.n_retain} sample(s), fewer than the {world} processes")
    return {"r": {"shards": st.retain_shards, "keep": IdFilter(st.forget_ids, inside=False), "n": st.n_retain,
                  "local_batch": local, "data": split.retain, "n_classes": st.n_classes}}


def unlearning_loop(method: Any, bundle: Any, split: ForgetSplit, cfg: UnlearnConfig, accelerator: Any,
                    run: TrainingRun | None = None, desc: str | None = None) -> UnlearnResult:
    """Run ``cfg.steps`` steps of ``method`` (a :class:`cliperase.methods.UnlearningMethod`: its ``needs``,
    ``loss``, ``frozen_keys`` and ``towers_for``) on ``bundle.model`` (modified in place and returned).
    Callers go through :func:`cliperase.methods.unlearn`, which picks ``cfg.method``'s method.

    With a ``run`` that has a directory (prepared by the caller): logs to its ``log.jsonl`` and checkpoints
    every ``cfg.checkpoint_every`` steps to its ``checkpoint/``, from which a resuming run continues.
    None: no files."""
    run = run or TrainingRun(None, accelerator)
    use = method.needs(cfg)
    world = accelerator.num_processes
    rank = accelerator.process_index
    device = accelerator.device
    t0 = time.perf_counter()

    model = bundle.model
    frozen = None
    if use["frozen"]:
        frozen = copy.deepcopy(model).to(device).eval().requires_grad_(False)
    model.logit_scale.requires_grad_(cfg.train_logit_scale)
    train_mode(model, cfg.freeze_norm_stats)
    image_frozen = method.towers_for(cfg) == "text"
    if image_frozen:  # eval mode too: BatchNorm statistics must not drift either
        for tower in bundle.image_tower():
            tower.requires_grad_(False).eval()
    text_mode = {"f": cfg.forget_text or cfg.text, "r": cfg.text}
    templates = config_templates(split.retain, cfg)

    def text_of(key: str, data: ImageTextData, rec: ImageTextRecord, pos: int, step: int) -> str:
        return pair_text(rec, data, text_mode[key], (cfg.seed, step, ord(key), pos), templates)

    pin = torch.device(device).type == "cuda"
    # Record parts: batches by index. A streamed split's D_r is a shard stream instead (its D_f stays records).
    streamed_retain = split.stream is not None and use["retain"]
    streams: dict[str, tuple[StepBatches, ImageTextData]] = {}
    if use["forget"]:
        streams["f"] = (StepBatches.for_processes(len(split.forget), cfg.forget_batch_size, cfg.seed, world,
                                                  "forget"), split.forget)
    if use["retain"] and not streamed_retain:
        streams["r"] = (StepBatches.for_processes(len(split.retain), cfg.batch_size, cfg.seed + 1, world,
                                                  "retain"), split.retain)
    sources: list[RecordSteps | StreamSteps] = []
    if streams:
        step_images = StepImages([(data.records, stream) for stream, data in streams.values()], bundle.preprocess_eval,
                                 rank, world, cfg.num_workers, pin_memory=pin)
        sources.append(RecordSteps(streams, step_images, text_of, world))
    if streamed_retain:
        sources.append(StreamSteps(_retain_stream(split, cfg, world), bundle.preprocess_eval, text_of, seed=cfg.seed,
                                   rank=rank, world=world, num_workers=cfg.num_workers, pin_memory=pin,
                                   skip_bad=cfg.skip_bad))
    source = sources[0] if len(sources) == 1 else MergedSteps(*sources)

    emb = getattr(model, "token_embedding", None)
    subset = None
    if _row_subset_applies(emb, cfg) and not streamed_retain:
        # every text of steps [0, steps) is known now (batches depend only on seed and step): same rows on resume;
        # a streamed split's texts are known only when drawn
        planned = {text_of(key, data, data.records[i], i, step) for step in range(cfg.steps)
                   for key, (stream, data) in streams.items() for i in stream.at(step)}
        subset = model.token_embedding = RowSubsetEmbedding(emb, bundle.tokenizer(sorted(planned)))
    wrapper = DualEncoder(model)
    params = [p for p in wrapper.parameters() if p.requires_grad]
    optimizer = _make_optimizer(cfg, params)
    # Constant, or cosine decay to 0 over ``steps`` (big early steps dissociate D_f, small late ones let
    # RM/CM repair D_r without re-associating it).
    scheduler = lr_schedule(optimizer, cfg.steps, kind=cfg.lr_schedule)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)

    def frozen_encode(fn: Any, x: Any) -> torch.Tensor:
        # The frozen original runs under the same autocast as the prepared (trained) model, whose outputs
        # accelerate casts back to float32: at step 0 a copy then gives the trained model's features, and
        # MSE / KL to the original start at zero rather than at the bf16-vs-fp32 rounding gap.
        with torch.no_grad(), accelerator.autocast():
            return fn(x, normalize=False).float()

    # The frozen original encodes only the batches a loss compares with it (CLIPErase's CM: retain only).
    frozen_keys = method.frozen_keys(cfg)
    start, extra = run.resume(wrapper, optimizer, scheduler)
    elapsed_before = float(extra.get("train_seconds", 0.0))
    last: dict[str, float] = {}

    with progress_bar(cfg.steps - start, desc or f"unlearn ({cfg.method})") as advance:
        for step, sb in zip(range(start, cfg.steps), source.steps(start, cfg.steps), strict=True):
            keys = list(sb.local)
            texts_local = [t for key in keys for t in sb.local[key]]
            images_t = sb.images.to(device, non_blocking=True)
            tokens = bundle.tokenizer(texts_local).to(device)
            img, txt, scale = wrapper(images_t, tokens)
            feats: dict[str, Feats] = {}
            orig: dict[str, Feats] = {}
            offset = 0
            full_frozen = None
            if frozen is not None and frozen_keys >= set(keys):
                # Same input shapes as the trained model's forward: at step 0 both give bitwise equal
                # features, so MSE-to-original terms start with exactly zero gradient (no float noise
                # for Adam to blow up into full-size steps).
                # A frozen image tower gives the original's image features already: no second image forward.
                full_frozen = (img.detach() if image_frozen else frozen_encode(frozen.encode_image, images_t),
                               frozen_encode(frozen.encode_text, tokens))
            for key in keys:
                k = len(sb.local[key])
                sl = slice(offset, offset + k)
                offset += k
                back = sb.back[key].to(device) if sb.back[key] is not None else None
                texts = sb.texts[key]
                feats[key] = Feats(_gathered(img[sl], back), _gathered(txt[sl], back), texts)
                if frozen is not None and key in frozen_keys:
                    if full_frozen is not None:
                        o_img, o_txt = full_frozen[0][sl], full_frozen[1][sl]
                    else:
                        o_img = img[sl].detach() if image_frozen else frozen_encode(frozen.encode_image, images_t[sl])
                        o_txt = frozen_encode(frozen.encode_text, tokens[sl])
                    orig[key] = Feats(_gathered(o_img, back), _gathered(o_txt, back), texts)
            orig_scale = frozen.logit_scale.exp() if frozen is not None else None  # float32, like ``scale``
            loss, terms = method.loss(cfg, StepFeats(scale, feats.get("f"), feats.get("r"), orig.get("f"),
                                                     orig.get("r"), orig_scale, step))
            parts = {k: float(v.detach()) for k, v in terms.items()}
            accelerator.backward(loss)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            last = {"loss": float(loss.detach()), **parts}
            done = step + 1
            if done % max(cfg.log_every, 1) == 0 or done == cfg.steps:
                run.log({"phase": "unlearn", "method": cfg.method, **last}, step=done)
            # Periodic only: the finished model is written by the caller right after the loop, so a final
            # checkpoint (model + Adam state, ~140 MB for the tiny CLIP) would be written only to be deleted.
            if cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done < cfg.steps:
                run.checkpoint(wrapper, optimizer, scheduler, done,
                               {"train_seconds": elapsed_before + time.perf_counter() - t0})
            advance(1, loss=last["loss"])

    model = unwrap(wrapper).clip
    if subset is not None:
        model.token_embedding = subset.merged().to(device)
    model.eval()
    return UnlearnResult(model, elapsed_before + time.perf_counter() - t0, cfg.steps, start, last)
