"""mmcore.run.TrainingRun: the output directory every training loop shares."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from mmcore.errors import MMError
from mmcore.run import TrainingRun


@dataclass
class _Inner:
    depth: int = 2


@dataclass
class _Cfg:
    lr: float = 0.1
    name: str = "run"
    inner: _Inner = field(default_factory=_Inner)


class _FakeAccelerator:
    """Just what TrainingRun asks of an Accelerator: which process this is, a barrier, trackers."""

    def __init__(self, main: bool):
        self.is_main_process = main
        self.waits = 0
        self.trackers: list = []
        self.ended = False

    def wait_for_everyone(self) -> None:
        self.waits += 1

    def end_training(self) -> None:
        self.ended = True


class _Tracker:
    def __init__(self):
        self.finished = False

    def finish(self) -> None:
        self.finished = True


def _training_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return model, opt, sched


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_create_prepares_the_dir_and_saves_the_resolved_config(tmp_path):
    out = tmp_path / "run"
    acc = _FakeAccelerator(main=True)
    run = TrainingRun.create(out, acc, config=_Cfg(lr=0.25))
    assert json.loads((out / "config.json").read_text()) == {"lr": 0.25, "name": "run", "inner": {"depth": 2}}
    assert acc.waits == 1  # everyone waits until the directory exists
    run.write_metrics({"accuracy": 0.5})
    assert json.loads((out / "metrics.json").read_text()) == {"accuracy": 0.5}
    with pytest.raises(MMError, match="--overwrite to replace it or --resume"):
        TrainingRun.create(out, acc, resume=False)
    assert TrainingRun.create(out, acc, resume=True).resuming and (out / "metrics.json").is_file()
    TrainingRun.create(out, acc, overwrite=True)
    assert list(out.iterdir()) == []


def test_log_lines_carry_step_and_time(tmp_path):
    run = TrainingRun.create(tmp_path / "run", _FakeAccelerator(main=True))
    run.log({"loss": 1.5, "phase": "unlearn"}, step=1)
    run.log({"event": "eval", "accuracy": 0.75})
    first, second = _lines(tmp_path / "run" / "log.jsonl")
    assert first["step"] == 1 and first["loss"] == 1.5 and first["phase"] == "unlearn" and first["time"] >= 0
    assert "step" not in second and second["event"] == "eval" and second["accuracy"] == 0.75
    run.clear_log()
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_log_forwards_scalars_to_trackers(tmp_path):
    class _Tracking(_FakeAccelerator):
        def __init__(self):
            super().__init__(main=True)
            self.trackers = [_Tracker()]
            self.logged: list = []

        def log(self, values, step=None):
            self.logged.append((values, step))

    acc = _Tracking()
    run = TrainingRun.create(tmp_path / "run", acc)
    run.log({"loss": 2.0, "phase": "x", "step_size": 3}, step=4)
    assert acc.logged == [({"loss": 2.0, "step_size": 3.0}, 4)]
    run.finish()
    assert acc.trackers[0].finished and acc.waits == 2


def test_resume_round_trip_restores_step_extra_and_weights(tmp_path):
    out = tmp_path / "run"
    model, opt, sched = _training_state(0)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    run = TrainingRun.create(out, _FakeAccelerator(main=True))
    run.checkpoint(model, opt, sched, step=7, extra={"epoch": 2})
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 7

    fresh, fresh_opt, fresh_sched = _training_state(1)
    assert not torch.equal(fresh.weight, model.weight)
    assert TrainingRun(out).resume(fresh, fresh_opt, fresh_sched) == (0, {})  # not resuming: starts over
    resumed = TrainingRun(out, resume=True)
    assert resumed.has_checkpoint
    assert resumed.resume(fresh, fresh_opt, fresh_sched) == (7, {"epoch": 2})
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    assert fresh_sched.get_last_lr() == sched.get_last_lr() == [0.25]


def test_resume_without_a_checkpoint_starts_at_zero(tmp_path):
    model, opt, sched = _training_state(0)
    run = TrainingRun.create(tmp_path / "run", resume=True)
    assert not run.has_checkpoint and run.resume(model, opt, sched) == (0, {})


def test_finish_removes_the_checkpoint_unless_kept(tmp_path):
    model, opt, sched = _training_state(0)
    run = TrainingRun.create(tmp_path / "run")
    run.checkpoint(model, opt, sched, step=1)
    run.finish(keep_checkpoint=True)
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    run.finish()
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_finish_end_training_releases_the_accelerator(tmp_path):
    acc = _FakeAccelerator(main=True)
    TrainingRun.create(tmp_path / "run", acc).finish(end_training=True)
    assert acc.ended and acc.waits == 1  # the one wait of create: end_training replaces the final one


def test_a_run_without_a_directory_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, opt, sched = _training_state(0)
    acc = _FakeAccelerator(main=True)
    run = TrainingRun.create(None, acc, config=_Cfg(), resume=True)
    run.log({"loss": 1.0}, step=1)
    run.checkpoint(model, opt, sched, step=1)
    run.write_metrics({"a": 1})
    assert run.resume(model, opt, sched) == (0, {}) and not run.has_checkpoint
    run.finish()
    assert list(tmp_path.iterdir()) == [] and run.checkpoint_dir is None and not run.writes


def test_other_processes_write_nothing_but_wait(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    model, opt, sched = _training_state(0)
    acc = _FakeAccelerator(main=False)
    run = TrainingRun.create(out, acc, config=_Cfg())
    run.log({"loss": 1.0}, step=1)
    run.checkpoint(model, opt, sched, step=1)
    run.write_metrics({"a": 1})
    run.finish()
    assert list(out.iterdir()) == []
    assert acc.waits == 3  # after preparing, after the checkpoint, at the end
    (out / "stale.txt").write_text("x")
    TrainingRun.create(out, acc)  # only the main process decides about a non-empty directory


def test_attaching_to_a_prepared_dir_touches_nothing(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "before.json").write_text("{}")  # what the caller wrote after preparing it
    acc = _FakeAccelerator(main=True)
    run = TrainingRun(out, acc, resume=True)  # no prepare_output_dir: a non-empty dir is not refused
    assert acc.waits == 0 and sorted(p.name for p in out.iterdir()) == ["before.json"]
    assert not (tmp_path / "elsewhere").exists() and not TrainingRun(tmp_path / "elsewhere").has_checkpoint
    run.log({"loss": 0.5}, step=1)
    assert sorted(p.name for p in out.iterdir()) == ["before.json", "log.jsonl"]
