"""Training checkpoints without pickle: model and optimizer tensors in safetensors, the rest in JSON.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` and ``state.json``
(step, epoch, optimizer param groups, scheduler state, RNG states, any extra fields). It is written
into a temporary folder and renamed into place, so a kill never leaves a half checkpoint.
"""

from __future__ import annotations

import base64
import random
import shutil
from pathlib import Path
from typing import Any

from mmcore.errors import DataError, MMError
from mmcore.io import load_safetensors, read_json, save_safetensors, temp_dir_beside, write_json


def unwrap(model: Any) -> Any:
    """The bare module under DDP / accelerate / torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_state_tensors(model: Any) -> dict[str, Any]:
    """State dict with shared (tied) tensors stored once, as safetensors requires."""
    sd = unwrap(model).state_dict()
    seen: dict[int, str] = {}
    out = {}
    for k, v in sd.items():
        key = (v.data_ptr(), tuple(v.shape), v.dtype) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen[key] = k
        out[k] = v
    return out


def save_model(model: Any, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    return save_safetensors(path, model_state_tensors(model), metadata=metadata)


def load_model_weights(model: Any, path: str | Path, strict: bool = True) -> Any:
    """Load safetensors weights, with a clear error for a checkpoint of another architecture."""
    sd = load_safetensors(path)
    target = unwrap(model)
    own = target.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape_bad = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    # Tied weights are stored once: a missing key whose tensor is shared with a present one is fine.
    ptr_of = {}
    for k, v in own.items():
        ptr_of.setdefault(v.data_ptr(), []).append(k)
    missing = [k for k in missing if not any(o in sd for o in ptr_of.get(own[k].data_ptr(), []))]
    if shape_bad or (strict and (missing or unexpected)):
        detail = []
        if shape_bad:
            k = shape_bad[0]
            detail.append(f"{len(shape_bad)} shape mismatch(es), e.g. {k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
        if missing:
            detail.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise DataError(path, "checkpoint does not match the model architecture: " + "; ".join(detail))
    target.load_state_dict(sd, strict=False)
    return model


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(raw))


def _flatten_optimizer(opt_sd: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for pid, st in opt_sd["state"].items():
        for name, val in st.items():
            key = f"{pid}.{name}"
            if isinstance(val, torch.Tensor):
                tensors[key] = val
            else:
                scalars[key] = val
    return tensors, {"param_groups": opt_sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, val in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(
    ckpt_dir: str | Path,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a resumable checkpoint atomically (call on the main process only)."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(ckpt_dir)
    try:
        save_model(model, tmp / "model.safetensors")
        meta: dict[str, Any] = {"step": step, "extra": extra or {}, "rng": _rng_state()}
        if optimizer is not None:
            tensors, opt_meta = _flatten_optimizer(unwrap(optimizer).state_dict() if not hasattr(optimizer, "optimizer") else optimizer.optimizer.state_dict())
            save_safetensors(tmp / "optimizer.safetensors", tensors)
            meta["optimizer"] = opt_meta
        if scheduler is not None:
            sch = scheduler.scheduler if hasattr(scheduler, "scheduler") else scheduler
            meta["scheduler"] = {k: v for k, v in sch.state_dict().items() if not callable(v)}
        write_json(tmp / "state.json", meta)
        old = ckpt_dir.with_name(f".{ckpt_dir.name}.old")
        if ckpt_dir.exists():
            ckpt_dir.rename(old)
        tmp.rename(ckpt_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ckpt_dir


def load_training_state(
    ckpt_dir: str | Path, model: Any, optimizer: Any = None, scheduler: Any = None, restore_rng: bool = True
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_training_state`; returns ``{"step", "extra"}``."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / "state.json").is_file():
        raise MMError(f"{ckpt_dir}: no checkpoint to resume from (state.json missing)")
    meta = read_json(ckpt_dir / "state.json")
    load_model_weights(model, ckpt_dir / "model.safetensors")
    if optimizer is not None and "optimizer" in meta:
        opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        opt.load_state_dict(_unflatten_optimizer(load_safetensors(ckpt_dir / "optimizer.safetensors"), meta["optimizer"]))
    if scheduler is not None and "scheduler" in meta:
        sch = scheduler.scheduler if hasattr(scheduler, "scheduler") else scheduler
        sch.load_state_dict(meta["scheduler"])
    if restore_rng:
        _set_rng_state(meta["rng"])
    return {"step": int(meta["step"]), "extra": meta.get("extra", {})}


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    """Number of parameters of a torch module (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
