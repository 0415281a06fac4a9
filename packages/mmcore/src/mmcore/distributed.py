"""Accelerate glue shared by every training recipe: building the Accelerator, seeding,
main-process-only logging and progress bars, metric gathering and feature gathering.

One process on a laptop CPU, several CPU processes with gloo (``ACCELERATE_USE_CPU=true accelerate
launch --num_processes 2 ...``) and multi-GPU runs all go through the same code.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class AcceleratorConfig:
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16"; "no" by default: on the CPU bf16 slows small models down
    cpu: bool = False  # force CPU even when a GPU is visible
    log_with: str = "auto"  # "auto" (tensorboard if installed) | "none" | "tensorboard" | "wandb"
    # torch.use_deterministic_algorithms(warn_only=True): None = on the CPU only (where it costs nothing
    # measurable here and makes runs repeatable), True / False = always / never (on GPUs it costs speed)
    deterministic: bool | None = None


def build_accelerator(cfg: AcceleratorConfig | None = None, project_dir: str | Path | None = None):
    """Create an :class:`accelerate.Accelerator` from config (trackers under ``project_dir``)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    cfg = cfg or AcceleratorConfig()
    log_with: list[str] | None
    if cfg.log_with == "auto":
        try:
            import tensorboard  # noqa: F401

            log_with = ["tensorboard"] if project_dir is not None else None
        except ImportError:
            log_with = None
    elif cfg.log_with == "none":
        log_with = None
    else:
        log_with = [cfg.log_with]
    project = None
    if project_dir is not None:
        project = ProjectConfiguration(project_dir=str(project_dir), logging_dir=str(Path(project_dir) / "tb"))
    acc = Accelerator(
        mixed_precision=cfg.mixed_precision,
        cpu=cfg.cpu,
        log_with=log_with,
        project_config=project,
    )
    if cfg.deterministic or (cfg.deterministic is None and acc.device.type == "cpu"):
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    return acc


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def is_main_process() -> bool:
    """True on rank 0 (or when torch.distributed is not initialised)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:
        pass
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(x):
    """All-gather a tensor along dim 0 keeping the autograd graph (for contrastive losses over the
    global batch, as open_clip does). Identity on one process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn as dist_nn

    return torch.cat(dist_nn.all_gather(x), dim=0)


def shard_indices(indices: list[int]) -> list[int]:
    """This process's slice of a global batch of indices (round-robin, so sizes stay equal)."""
    return indices[rank() :: world_size()]


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """A deterministic shuffle of ``range(n)`` for ``epoch``: the data order depends only on
    (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def global_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True) -> list[list[int]]:
    """The global batches (lists of dataset indices) of one epoch."""
    perm = epoch_permutation(n, seed, epoch)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [perm[i : i + batch_size] for i in range(0, stop, batch_size)]


class StepBatches:
    """The global batch of every optimizer step over ``range(n)``: step ``s`` is batch ``s % per_epoch``
    of epoch ``s // per_epoch`` of :func:`global_batches` (the data order depends only on seed and step,
    so a resumed run and any number of processes see the batches of one uninterrupted process)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if not 0 < batch_size <= n:
            raise ValueError(f"StepBatches: batch_size {batch_size} must be in [1, n={n}]")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch: int | None = None
        self._batches: list[list[int]] = []

    @classmethod
    def for_processes(cls, n: int, batch_size: int, seed: int, world: int, what: str) -> StepBatches:
        """Batches of ``min(batch_size, n)`` rounded down to a multiple of the ``world`` processes, so that
        their shards have equal sizes (all-gather needs it); ``what`` names the set in the error."""
        from mmcore.errors import MMError

        bs = (min(batch_size, n) // world) * world
        if bs == 0:
            raise MMError(f"{what} set has {n} sample(s), fewer than the {world} processes")
        return cls(n, bs, seed)

    def epoch(self, step: int) -> int:
        return step // self.per_epoch

    def at(self, step: int) -> list[int]:
        """The global batch (dataset indices) of ``step``."""
        epoch, j = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._batches = global_batches(self.n, self.batch_size, self.seed, epoch)
            self._epoch = epoch
        return self._batches[j]


def gathered_order(batch: list[int], world: int) -> list[int]:
    """A global batch in the order all-gathering the round-robin shards (``batch[r::world]``)
    concatenates them (:func:`gather_with_grad`)."""
    return [i for r in range(world) for i in batch[r::world]]


def grouped_global_batches(keys: Sequence[str], batch_size: int, seed: int, epoch: int, per_group: int) -> list[list[int]]:
    """Global batches whose samples come in runs of up to ``per_group`` samples sharing a key (e.g.
    several questions about one video, whose features the model then computes once per batch).

    Each key's samples are shuffled and cut into runs; the runs are shuffled and concatenated, then cut
    into batches (the last partial one dropped). Like :func:`global_batches` the order depends only on
    (seed, epoch); each sample is visited once per epoch."""
    if per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    by_key: dict[str, list[int]] = {}
    for i in epoch_permutation(len(keys), seed, epoch):
        by_key.setdefault(keys[i], []).append(i)
    runs = [idx[j : j + per_group] for idx in by_key.values() for j in range(0, len(idx), per_group)]
    order = [i for r in epoch_permutation(len(runs), seed + 1, epoch) for i in runs[r]]
    stop = (len(order) // batch_size) * batch_size
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


class JsonlLogger:
    """Appends one JSON object per line; only the main process writes. Also forwards scalars to
    accelerate's trackers when an accelerator with trackers is given."""

    def __init__(self, path: str | Path, accelerator: Any = None):
        self.path = Path(path)
        self.accelerator = accelerator
        self._t0 = time.time()

    def log(self, record: dict[str, Any], step: int | None = None) -> None:
        if not is_main_process():
            return
        rec = {"time": round(time.time() - self._t0, 3), **({"step": step} if step is not None else {}), **record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=float) + "\n")
        if self.accelerator is not None and getattr(self.accelerator, "trackers", None):
            scalars = {k: float(v) for k, v in record.items() if isinstance(v, int | float)}
            self.accelerator.log(scalars, step=step)


def console():
    from rich.console import Console

    return Console(stderr=True)


def quiet_third_party_progress() -> None:
    """Silence the tqdm bars of diffusers, transformers and huggingface_hub ("Loading pipeline components",
    "Loading weights", "Writing model shards"): only the project's own bars (:func:`progress_bar`) show.
    Call before loading or saving with those libraries; a library that is not installed is skipped."""
    import importlib

    for mod, fn in (("diffusers.utils.logging", "disable_progress_bar"),
                    ("transformers.utils.logging", "disable_progress_bar"),
                    ("huggingface_hub.utils", "disable_progress_bars")):
        try:
            getattr(importlib.import_module(mod), fn)()
        except (ImportError, AttributeError):
            pass


@contextmanager
def progress_bar(total: int | None, description: str, disable: bool | None = None) -> Iterator[Any]:
    """A rich progress bar shown on the main process only; yields an ``advance(n=1, **fields)`` callable.

    Also disabled when ``MM_NO_PROGRESS=1`` (tests, logs)."""
    if disable is None:
        disable = not is_main_process() or os.environ.get("MM_NO_PROGRESS") == "1"
    if disable:
        yield lambda n=1, **kw: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console(),
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: Any) -> None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            prog.update(task, advance=n, info=info)

        yield advance


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a main-process progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, description) as advance:
        for it in items:
            yield it
            advance()


def free_port() -> int:
    """A free TCP port on loopback (for a rendezvous that must not collide with other runs)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cpu_processes(fn: Any, args: tuple = (), num_processes: int = 2, threads_per_process: int = 1) -> None:
    """Run ``fn(*args)`` in ``num_processes`` CPU processes joined by gloo, as accelerate's
    ``debug_launcher`` does, but with *spawned* processes and a free port.

    Spawn, not fork: forking a process that has already run multi-threaded torch ops can deadlock
    the children in OpenMP; and a fixed port (debug_launcher's 29500) collides with parallel runs.
    ``fn`` must be importable (module level). For real multi-process jobs use ``accelerate launch``."""
    import tempfile

    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    # A path in a private folder, not a NamedTemporaryFile: the rendezvous store deletes the file itself.
    with tempfile.TemporaryDirectory() as rdv_dir, patch_environment(
        world_size=num_processes, master_addr="127.0.0.1", master_port=str(free_port()),
        accelerate_mixed_precision="no", accelerate_debug_rdv_file=f"{rdv_dir}/rdv", accelerate_use_cpu="yes",
        gloo_socket_ifname="lo", omp_num_threads=str(threads_per_process),
    ):
        start_processes(PrepareForLaunch(fn, debug=True), args=args, nprocs=num_processes, start_method="spawn")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (None or <= 0: unchanged), then restore the old
    count: a library call must not change a global setting under its caller's feet."""
    import torch

    old = torch.get_num_threads()
    if n is not None and n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
