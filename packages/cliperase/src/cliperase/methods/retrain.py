"""Retrain: the original model's own pretraining recipe (``mmcore.clip_train.train_clip``) run again on D_r from
random weights — the "never learned" reference that unlearning approximates, and the wall time every method's
is compared with."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from mmcore.errors import MMError

from cliperase.config import UnlearnConfig
from cliperase.methods.base import UnlearningMethod, register_method

if TYPE_CHECKING:
    from cliperase.step_types import UnlearnResult


def retrain_model(
    cfg: UnlearnConfig, bundle: Any, split: Any, acc: Any, run: Any = None
) -> tuple[Any, float, dict]:
    """Train the same architecture from random weights on D_r with the pretraining loop (``run``: the
    method's run, whose directory gets its log and checkpoint under ``retrain/``; None: no files).
    Returns the model, the training seconds and the resolved training config."""
    from mmcore.checkpoint import unwrap
    from mmcore.clip_train import ClipTrainConfig, train_clip
    from mmcore.config import config_to_dict, resolve_config
    from mmcore.encoders.clip import create_clip
    from mmcore.run import TrainingRun

    from cliperase.recipes.provenance import pretrain_config

    raw = pretrain_config(cfg.model)
    train_cfg = None
    if raw is not None:
        known = {f.name for f in dataclasses.fields(ClipTrainConfig)}
        try:
            train_cfg = resolve_config(
                ClipTrainConfig,
                None,
                {k: v for k, v in raw.items() if k in known and not isinstance(v, dict)},
            )
        except MMError:
            train_cfg = None
    recorded = train_cfg is not None
    train_cfg = train_cfg or ClipTrainConfig()
    rc = cfg.retrain
    updates: dict[str, Any] = {"seed": cfg.seed}
    if rc.steps or not recorded:
        updates["steps"] = rc.steps or rc.fallback_steps
        updates["epochs"] = 0.0
    if rc.lr:
        updates["lr"] = rc.lr
    if rc.batch_size:
        updates["batch_size"] = rc.batch_size
    updates["checkpoint_every"] = cfg.checkpoint_every * 10 if cfg.checkpoint_every else 0
    updates["accelerator"] = cfg.accelerator
    train_cfg = dataclasses.replace(train_cfg, **updates)
    fresh = create_clip(bundle.model_name, None, device=str(acc.device))
    t0 = time.perf_counter()
    # its log and checkpoint in OUT/retrain/ (kept: they are Retrain's own record)
    run = run or TrainingRun(None, acc)
    sub = TrainingRun(run.out / "retrain" if run.out is not None else None, acc, resume=run.resuming)
    model = train_clip(fresh, split.retain.records, train_cfg, sub, desc="retrain")
    return unwrap(model), time.perf_counter() - t0, config_to_dict(train_cfg)


@register_method
class Retrain(UnlearningMethod):
    name = "retrain"
    help = "Retrain: the pretraining recipe on D_r from random weights (the reference; slow)"
    order = 90
    towers = "both"  # every weight is trained anew
    uses_steps = False
    in_memory = False  # it needs the model's recorded recipe, not just given data
    in_compare_default = False  # compare adds it as the reference where it can run
    reference = True

    def check(self, cfg: UnlearnConfig) -> None:
        from cliperase.recipes.provenance import retrain_error, retrain_unavailable
        from cliperase.streamed_split import streams_apply

        if why := retrain_unavailable(cfg):
            raise retrain_error(why)
        if streams_apply(cfg):
            raise MMError(
                "--method retrain trains a CLIP from scratch on all of D_r, which on webdataset shards "
                "with a keyword forget set is a stream, not a record list; pretrain on the retain shards "
                "with `mm clip pretrain` instead, or name the forget set with --forget-ids"
            )

    def unlearn(self, bundle: Any, split: Any, cfg: UnlearnConfig, accelerator: Any, run: Any = None,
                desc: str | None = None) -> UnlearnResult:
        from cliperase.step_types import UnlearnResult

        model, seconds, train_cfg = retrain_model(cfg, bundle, split, accelerator, run)
        steps = train_cfg.get("steps")  # the recipe's steps, as recorded in its config
        return UnlearnResult(model, seconds, steps, info=train_cfg)

    def result_metrics(self, result: UnlearnResult) -> dict[str, Any]:
        return {"retrain_config": result.info}
