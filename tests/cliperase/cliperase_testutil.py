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

