"""Tiny unlearning configs: mm-micro-clip (16 px), a few hundred shapes, a handful of steps."""

from __future__ import annotations

import dataclasses

from cliperase.config import ForgetSpec, RelearnConfig, RetrainConfig, UnlearnConfig


def tiny_config(**kw) -> UnlearnConfig:
    cfg = UnlearnConfig(
        model="mm-micro-clip",
        dataset="shapes",
        forget=ForgetSpec(classes=["circle"]),
        n_train=80,
        n_test=40,
        steps=4,
        batch_size=8,
        forget_batch_size=4,
        checkpoint_every=2,
        eval_batch_size=64,
        retrieval_max_pairs=16,
        mia_max_samples=32,
        relearn=RelearnConfig(max_steps=4, eval_every=2, eval_samples=8, batch_size=4),
        retrain=RetrainConfig(fallback_steps=3, batch_size=8),
    )
    return dataclasses.replace(cfg, **kw)



# An easy world a micro CLIP learns in seconds: four plain, fixed-size shapes in three colours at 16 px, and a
# micro CLIP with 4-px patches (mm-micro-clip's 8-px patches stay near chance on shapes). Forget "circle".
EASY_SHAPES = ("circle", "cross", "triangle", "square")
EASY_KW = {"image_size": 16, "shapes": EASY_SHAPES, "fixed_size": True, "background": "plain",
           "colors": ["red", "green", "blue"]}


def easy_split():
    """D_f (circle) / D_r from 200 training images, the held-out split from 200 more (seed 1)."""
    from cliperase.forget_sets import split_forget_retain
    from mmcore.data.shapes import make_shapes

    train, test = make_shapes(200, seed=0, **EASY_KW), make_shapes(200, seed=1, **EASY_KW)
    return split_forget_retain(train, test, ForgetSpec(classes=["circle"]))


def train_easy_world(root, steps: int = 300):
    """A micro CLIP (4-px patches) trained ``steps`` steps on the easy world's training images, saved to
    ``root/model``; returns (model dir, split). Held-out zero-shot accuracy ~98 % after 300 steps (~5 s)."""
    from pathlib import Path

    import open_clip
    import torch
    from mmcore.clip_train import ClipTrainConfig, train_clip
    from mmcore.distributed import AcceleratorConfig
    from mmcore.encoders.clip import create_clip, load_clip, save_clip

    root = Path(root)
    base = create_clip("mm-micro-clip")
    model_cfg = {**base.model_cfg, "vision_cfg": {**base.model_cfg["vision_cfg"], "patch_size": 4}}
    torch.manual_seed(0)
    save_clip(open_clip.model.CLIP(**model_cfg), root / "init", base.model_name, model_cfg)
    split = easy_split()
    cfg = ClipTrainConfig(model="mm-micro-clip", steps=steps, batch_size=32, lr=3e-3, warmup=10, eval_every=0,
                          checkpoint_every=0, accelerator=AcceleratorConfig(log_with="none"))
    model = train_clip(load_clip(root / "init"), split.forget.records + split.retain.records, cfg)
    save_clip(model, root / "model", base.model_name, model_cfg)
    return root / "model", split


def easy_config(model_dir, **kw) -> UnlearnConfig:
    """An UnlearnConfig for function-level calls on the easy world (the split comes from :func:`easy_split`)."""
    return tiny_config(model=str(model_dir), eval_batch_size=256, retrieval_max_pairs=200, mia_max_samples=200,
                       relearn=RelearnConfig(max_steps=60, eval_every=5, eval_samples=200, batch_size=32, lr=1e-3),
                       **kw)
