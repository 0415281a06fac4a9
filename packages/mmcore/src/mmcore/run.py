"""The output directory of one training run, the same for every training loop.

    run = TrainingRun.create(out, accelerator, overwrite=overwrite, resume=resume, config=cfg)
    step, extra = run.resume(model, optimizer, scheduler)      # (0, {}) without a checkpoint
    for step in range(step, total):
        ...
        run.log({"loss": loss}, step=step + 1)
        run.checkpoint(model, optimizer, scheduler, step + 1, {"epoch": epoch})
    run.write_metrics(metrics)
    run.finish()                                               # removes OUT/checkpoint

Only the main process writes; the others wait where a file must exist before everyone goes on
(the prepared directory, a checkpoint). ``TrainingRun(None)`` is a run without a directory (in-memory
library calls): every write is a no-op and :meth:`resume` starts at step 0. A caller that prepared the
directory itself (and wrote files into it) attaches with ``TrainingRun(out, accelerator, resume=...)``,
which touches nothing on disk, and hands the run to the training loop.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mmcore.distributed import JsonlLogger, is_main_process

CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"


class TrainingRun:
    """One run's output directory (``out_dir``; None: no files) seen from one process.

    ``accelerator``: the run's :class:`accelerate.Accelerator` (None: a single process; it may be set
    later, before the first write, by the loop that builds it). ``resume``: continue from
    ``OUT/checkpoint`` when there is one."""

    def __init__(self, out_dir: str | Path | None, accelerator: Any = None, *, resume: bool = False):
        self.out = Path(out_dir) if out_dir is not None else None
        self.accelerator = accelerator
        self.resuming = bool(resume)
        self._logger: JsonlLogger | None = None

    @classmethod
    def create(cls, out_dir: str | Path | None, accelerator: Any = None, *, overwrite: bool = False,
               resume: bool | None = None, config: Any = None) -> TrainingRun:
        """Prepare ``out_dir`` (:func:`mmcore.io.prepare_output_dir`: a non-empty one is refused unless
        ``overwrite`` or ``resume``; pass ``resume`` only where the command has ``--resume``) on the main
        process, wait for everyone, and save ``config`` (the resolved config) as config.json."""
        from mmcore.io import prepare_output_dir

        run = cls(out_dir, accelerator, resume=bool(resume))
        if run.out is not None:
            if run.is_main:
                prepare_output_dir(run.out, overwrite=overwrite, resume=resume)
            run.wait()
        if config is not None:
            run.save_config(config)
        return run

    # ------------------------------------------------------------------ processes

    @property
    def is_main(self) -> bool:
        acc = self.accelerator
        return bool(acc.is_main_process) if acc is not None else is_main_process()

    @property
    def writes(self) -> bool:
        """True where this process writes the run's files (a directory, and the main process)."""
        return self.out is not None and self.is_main

    def wait(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ files

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.out / CHECKPOINT_DIR if self.out is not None else None

    def save_config(self, config: Any) -> None:
        """The resolved config (a dataclass) as config.json."""
        if self.writes:
            from mmcore.config import save_config

            save_config(config, self.out / CONFIG_FILE)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """metrics.json, written atomically: a reader never sees half of it."""
        if self.writes:
            from mmcore.io import write_json

            write_json(self.out / METRICS_FILE, metrics)

    def log(self, record: dict[str, Any], step: int | None = None) -> None:
        """One line of log.jsonl (with the seconds since the run began and ``step``); its scalars also go
        to the accelerator's trackers when it has any."""
        if not self.writes:
            return
        if self._logger is None:
            self._logger = JsonlLogger(self.out / LOG_FILE, self.accelerator)
        self._logger.log(record, step=step)

    def clear_log(self) -> None:
        """Start log.jsonl afresh (a run that begins at step 0 over the log of an earlier attempt)."""
        if self.writes:
            (self.out / LOG_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------------ checkpoints

    @property
    def has_checkpoint(self) -> bool:
        """True when this run resumes and ``OUT/checkpoint`` holds a complete checkpoint."""
        ckpt = self.checkpoint_dir
        return self.resuming and ckpt is not None and (ckpt / "state.json").is_file()

    def resume(self, model: Any, optimizer: Any = None, scheduler: Any = None) -> tuple[int, dict[str, Any]]:
        """Restore model, optimizer, scheduler and RNG states from the checkpoint on every process;
        returns ``(step, extra)`` as saved, or ``(0, {})`` when there is nothing to resume from."""
        if not self.has_checkpoint:
            return 0, {}
        from mmcore.checkpoint import load_training_state

        state = load_training_state(self.checkpoint_dir, model, optimizer, scheduler)
        return state["step"], state["extra"]

    def checkpoint(self, model: Any, optimizer: Any = None, scheduler: Any = None, step: int = 0,
                   extra: dict[str, Any] | None = None) -> None:
        """Write ``OUT/checkpoint`` atomically (main process), then wait for everyone."""
        if self.out is None:
            return
        if self.is_main:
            from mmcore.checkpoint import save_training_state

            save_training_state(self.checkpoint_dir, model, optimizer, scheduler, step=step, extra=extra)
        self.wait()

    def finish(self, keep_checkpoint: bool = False, *, end_training: bool = False) -> None:
        """The run completed: remove ``OUT/checkpoint`` (it only serves a resume) unless ``keep_checkpoint``,
        end the accelerator's trackers and wait for everyone. ``end_training``: the caller built the
        accelerator for this run alone: :meth:`accelerate.Accelerator.end_training` (which also ends the
        process group) instead of the wait."""
        if self.writes and not keep_checkpoint:
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        acc = self.accelerator
        if acc is None:
            return
        if end_training:
            acc.end_training()
            return
        for tracker in getattr(acc, "trackers", None) or []:
            tracker.finish()
        acc.wait_for_everyone()
