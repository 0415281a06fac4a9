"""`mm diffusion pretrain`: the offline default text-to-image model and its shape detector.

Design (chosen so that it trains in minutes on 2 CPU cores):
* images: a few shapes drawn large, centred, on plain grey, at 16 px — the generator has little to learn;
* a small pixel-space ``UNet2DConditionModel`` with cross-attention on the ORIGINAL tiny CLIP's per-token
  text states (frozen; all caption states are computed once, so a step costs one UNet pass);
* v-prediction with the cosine schedule (better than epsilon at small sizes), prompt dropout for
  classifier-free guidance, an EMA of the weights for sampling;
* a separate CNN shape detector trained on the same rendering with augmentation + an ``other`` class.
The result is saved in diffusers layout (``model_index.json``, ``unet/``, ``scheduler/``,
``text_encoder/``, ``tokenizer/``; safetensors) plus ``detector/``, ``config.json``, ``metrics.json``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmcore.distributed import progress_bar, seed_everything
from mmcore.errors import ConfigError, MMError
from mmcore.io import write_json
from mmcore.optim import lr_schedule
from mmcore.run import TrainingRun
from torch.nn import functional as F

from cliperase.diffusion.data import (
    DEFAULT_COLORS,
    DEFAULT_SHAPES,
    OTHER_CLASS,
    check_names,
    detector_training_set,
    diffusion_training_set,
)
from cliperase.diffusion.detector import DETECTOR_DIR, ShapeDetector, train_detector
from cliperase.diffusion.pipeline import (
    ShapesDiffusionPipeline,
    encode_prompts,
    generate,
    text_tower_from_clip,
)


@dataclass
class UNetConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    # Also feed an attention-pooled summary of the text states into every ResNet block (diffusers'
    # addition_embed_type="text"): a global conditioning path that a small UNet learns much faster.
    text_time_embedding: bool = True
    text_time_heads: int = 4


@dataclass
class DiffusionPretrainConfig:
    clip: str = ""  # the ORIGINAL CLIP (model dir or name) whose text tower conditions the UNet
    shapes: list[str] = field(default_factory=lambda: list(DEFAULT_SHAPES))
    colors: list[str] = field(default_factory=lambda: list(DEFAULT_COLORS))
    image_size: int = 16
    patch_size: int = 2  # the UNet sees [3·p², S/p, S/p] (space-to-depth): ~p² fewer FLOPs, same pixels
    radius_frac: float = 0.4  # shape radius as a fraction of the image side
    unet: UNetConfig = field(default_factory=UNetConfig)
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    prompt_dropout: float = 0.1  # fraction of steps trained on the empty prompt (for guidance)
    prediction_type: str = "v_prediction"  # "v_prediction" | "epsilon"
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    checkpoint_every: int = 500
    max_minutes: float = 16.0  # >0: stop the UNet (saving a checkpoint) after this long: keeps the run < 20 min
    detector_samples: int = 6000
    detector_steps: int = 600
    detector_batch_size: int = 64
    detector_width: int = 32
    detector_other_class: bool = True
    sample_steps: int = 30  # DDIM steps used by the sanity check (and suggested for eval)
    guidance_scale: float = 2.0
    check_per_shape: int = 8  # images per shape generated after training to report detection
    num_threads: int = 1  # >0: torch.set_num_threads; the UNet's kernels are too small to gain from a second thread
    seed: int = 0


# Named settings; applied as overrides (the --set options still win).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "demo": {"steps": 1500, "detector_steps": 300, "detector_samples": 3000, "checkpoint_every": 200,
             "check_per_shape": 4, "max_minutes": 4.5},
    "test": {"steps": 4, "detector_steps": 4, "detector_samples": 40, "unet.block_out_channels": [16, 32],
             "batch_size": 4, "checkpoint_every": 2, "check_per_shape": 1, "sample_steps": 2,
             "colors": ["red", "blue"], "max_minutes": 0.0},
}


def apply_preset(cfg: DiffusionPretrainConfig, preset: dict[str, Any] | str) -> DiffusionPretrainConfig:
    """``cfg`` with a preset's (dotted) values applied on top, e.g. ``apply_preset(cfg, "demo")``."""
    import dataclasses

    from mmcore.config import resolve_config

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    # Whole current values first, then the preset's dotted keys (later keys win in resolve_config).
    return resolve_config(DiffusionPretrainConfig, None, {**dataclasses.asdict(cfg), **preset})


def validate(cfg: DiffusionPretrainConfig) -> None:
    if not cfg.clip:
        raise ConfigError("clip: pass --clip DIR (the original CLIP model directory or name)")
    check_names(cfg.shapes, cfg.colors)
    if cfg.prediction_type not in ("v_prediction", "epsilon"):
        raise ConfigError(f"prediction_type must be 'v_prediction' or 'epsilon', got {cfg.prediction_type!r}")
    levels = len(cfg.unet.block_out_channels)
    div = cfg.patch_size * 2 ** (levels - 1)
    if cfg.patch_size < 1 or cfg.image_size % div:
        raise ConfigError(f"image_size {cfg.image_size} must be divisible by patch_size · 2^(levels-1) = {div}")
    if any(c % cfg.unet.norm_num_groups for c in cfg.unet.block_out_channels):
        raise ConfigError("unet.block_out_channels must be multiples of unet.norm_num_groups")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ConfigError("steps and batch_size must be >= 1")


def build_unet(cfg: DiffusionPretrainConfig, cross_attention_dim: int) -> Any:
    """Pixel-space conditional UNet: plain ResNet blocks at full resolution, cross-attention below."""
    from diffusers import UNet2DConditionModel

    ch = list(cfg.unet.block_out_channels)
    down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (len(ch) - 1)
    up = ["CrossAttnUpBlock2D"] * (len(ch) - 1) + ["UpBlock2D"]
    return UNet2DConditionModel(
        sample_size=cfg.image_size // cfg.patch_size,
        in_channels=3 * cfg.patch_size**2,
        out_channels=3 * cfg.patch_size**2,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(ch),
        layers_per_block=cfg.unet.layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.unet.attention_head_dim,
        norm_num_groups=cfg.unet.norm_num_groups,
        addition_embed_type="text" if cfg.unet.text_time_embedding else None,
        addition_embed_type_num_heads=cfg.unet.text_time_heads,
    )


def build_schedulers(cfg: DiffusionPretrainConfig) -> tuple[Any, Any]:
    """(training DDPM scheduler, sampling DDIM scheduler) sharing one noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler

    train = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )
    sample = DDIMScheduler.from_config(train.config, timestep_spacing="trailing", set_alpha_to_one=False)
    return train, sample


def pretrain_diffusion(
    cfg: DiffusionPretrainConfig, out_dir: str | Path, *, overwrite: bool = False, resume: bool = False
) -> dict[str, Any]:
    """Train the detector and the diffusion UNet; save the pipeline dir; return the metrics."""
    from mmcore.distributed import torch_threads

    with torch_threads(cfg.num_threads):
        return _pretrain_diffusion(cfg, out_dir, overwrite=overwrite, resume=resume)


def _pretrain_diffusion(
    cfg: DiffusionPretrainConfig, out_dir: str | Path, *, overwrite: bool = False, resume: bool = False
) -> dict[str, Any]:
    validate(cfg)
    run = TrainingRun.create(out_dir, overwrite=overwrite, resume=resume)
    out = Path(out_dir)
    if resume and not run.has_checkpoint and (out / "model_index.json").is_file():
        raise MMError(f"{out}: training already finished (model_index.json exists); use --overwrite to retrain")
    run.save_config(cfg)
    seed_everything(cfg.seed)
    t_start = time.time()
    metrics: dict[str, Any] = {"clip": cfg.clip}

    text_encoder, tokenizer = text_tower_from_clip(cfg.clip)
    width = int(text_encoder.config.hidden_size)

    # 1. detector (cheap; skipped on resume when already saved)
    det_dir = out / DETECTOR_DIR
    classnames = list(cfg.shapes) + ([OTHER_CLASS] if cfg.detector_other_class else [])
    if resume and (det_dir / "config.json").is_file():
        detector = ShapeDetector.load(det_dir)
    else:
        x, y = detector_training_set(cfg.shapes, cfg.detector_samples, cfg.seed, cfg.image_size, cfg.radius_frac,
                                     other_class=cfg.detector_other_class)
        xv, yv = detector_training_set(cfg.shapes, max(200, cfg.detector_samples // 10), cfg.seed + 1,
                                       cfg.image_size, cfg.radius_frac, other_class=cfg.detector_other_class)
        detector, det_metrics = train_detector(x, y, classnames, steps=cfg.detector_steps, seed=cfg.seed, val=(xv, yv),
                                               batch_size=cfg.detector_batch_size, width=cfg.detector_width)
        detector.save(det_dir)
        write_json(det_dir / "metrics.json", det_metrics)
        run.log(det_metrics)
    metrics.update(_read_det_metrics(det_dir))

    # 2. diffusion data: every (shape, colour) image, all captions encoded once by the frozen tower
    images, captions, labels = diffusion_training_set(cfg.shapes, cfg.colors, cfg.image_size, cfg.radius_frac)
    flat = [c for caps in captions for c in caps]
    with torch.no_grad():
        states = torch.cat([encode_prompts(text_encoder, tokenizer, flat[i : i + 256]) for i in range(0, len(flat), 256)])
        empty = encode_prompts(text_encoder, tokenizer, [""])
    cap_owner = torch.as_tensor([i for i, caps in enumerate(captions) for _ in caps])
    x0_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    x0_all = F.pixel_unshuffle(x0_all, cfg.patch_size)

    unet = build_unet(cfg, width)
    ema = copy.deepcopy(unet).requires_grad_(False)
    holder = torch.nn.ModuleDict({"unet": unet, "ema": ema})  # one checkpointed module keeps both
    train_sched, sample_sched = build_schedulers(cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    # linear warm-up, then cosine decay to a tenth of lr
    lr_sched = lr_schedule(opt, cfg.steps, warmup=cfg.warmup_steps, floor=0.1)
    start, _ = run.resume(holder, opt, lr_sched)
    metrics["unet_parameters"] = sum(p.numel() for p in unet.parameters())

    step = start
    t_train = time.time()
    stopped_early = False
    unet.train()
    with progress_bar(cfg.steps, "diffusion") as advance:
        advance(start)
        while step < cfg.steps:
            # Everything random in a step comes from (seed, step): a resumed run repeats it exactly.
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            cap = torch.randint(0, len(flat), (cfg.batch_size,), generator=g)
            x0 = x0_all[cap_owner[cap]]
            cond = states[cap].clone()
            drop = torch.rand(cfg.batch_size, generator=g) < cfg.prompt_dropout
            cond[drop] = empty
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=g)
            xt = train_sched.add_noise(x0, noise, t)
            target = train_sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
            pred = unet(xt, t, encoder_hidden_states=cond).sample
            loss = F.mse_loss(pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # fast EMA warm-up
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                    pe.lerp_(p, 1 - decay)
            step += 1
            advance(loss=float(loss.detach()))
            if step % 50 == 0 or step == cfg.steps:
                run.log({"loss": float(loss.detach()), "lr": lr_sched.get_last_lr()[0]}, step=step)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                run.checkpoint(holder, opt, lr_sched, step)
            if cfg.max_minutes > 0 and time.time() - t_train > cfg.max_minutes * 60:
                stopped_early = step < cfg.steps
                break
    if stopped_early:
        run.checkpoint(holder, opt, lr_sched, step)  # --resume continues from here
    metrics.update(final_loss=float(loss.detach()) if step > start else None, steps_done=step, stopped_early=stopped_early,
                   train_seconds=round(time.time() - t_train, 1))

    pipe = ShapesDiffusionPipeline(unet=ema.eval(), scheduler=sample_sched, text_encoder=text_encoder, tokenizer=tokenizer,
                                  patch_size=cfg.patch_size)
    from mmcore.distributed import quiet_third_party_progress

    quiet_third_party_progress()
    pipe.save_pretrained(str(out), safe_serialization=True)

    # 3. sanity check: does the trained generator draw each shape (per the detector)?
    check = {}
    for si, shape in enumerate(cfg.shapes):
        imgs = generate(pipe, f"a {shape}", cfg.check_per_shape, cfg.seed + 10_000, cfg.sample_steps, cfg.guidance_scale)
        check[shape] = float((detector.predict(imgs).argmax(1) == si).mean())
    metrics["check_detection"] = check
    metrics["check_detection_mean"] = float(np.mean(list(check.values())))
    metrics["total_seconds"] = round(time.time() - t_start, 1)
    run.write_metrics(metrics)
    run.log({"check_detection_mean": metrics["check_detection_mean"]}, step=step)
    run.finish(keep_checkpoint=stopped_early)  # finished: the pipeline folder is the artefact
    return metrics


def _read_det_metrics(det_dir: Path) -> dict[str, Any]:
    from mmcore.io import read_json

    p = det_dir / "metrics.json"
    return read_json(p) if p.is_file() else {}
