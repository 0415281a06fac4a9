"""Committed recipes, shipped as package data (<package>/configs/<group>/, found by mmcore.presets; the
benchmarks' settings in configs/benchmarks/ are tests/test_benchmark_configs.py's): every YAML resolves into the
dataclass of the command that reads it with no unknown key, each `--preset` name has its file and each file its
name, a built wheel carries them, and `--preset` applies under `--config FILE` and explicit options."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from mm_cli.common import PRESET_PACKAGES
from mm_cli.main import app
from mmcore.presets import preset_dir
from typer.testing import CliRunner

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
# configs/<group>/<file name prefix> -> the dataclass its command resolves (import path)
DATACLASSES = {("avqa", ""): "sasrnet.config.TrainConfig", ("unlearn", ""): "cliperase.config.UnlearnConfig",
               ("clip", "pretrain-"): "mmcore.clip_train.ClipTrainConfig"}
GROUP_DIRS = {group: preset_dir(package, group) for group, package in PRESET_PACKAGES.items()}
FILES = sorted(p for d in GROUP_DIRS.values() for p in d.glob("*.yaml"))


def _dataclass(path: Path) -> type:
    import importlib

    group = path.parent.name
    names = [v for (g, prefix), v in DATACLASSES.items() if g == group and path.name.startswith(prefix)]
    assert len(names) == 1, f"{path}: no command reads it; map it in DATACLASSES"
    module, cls = names[0].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def test_presets_live_in_their_packages_not_in_a_checkout_folder():
    for group, package in PRESET_PACKAGES.items():
        assert GROUP_DIRS[group] == ROOT / "packages" / package / "src" / package / "configs" / group
    assert FILES and not (ROOT / "configs" / "unlearn").exists()
    # the packages' builds take them along: hatchling ships every file under the package folder
    for package in set(PRESET_PACKAGES.values()):
        text = (ROOT / "packages" / package / "pyproject.toml").read_text()
        assert "exclude" not in text and 'build-backend = "hatchling.build"' in text, package


def test_paper_setting_is_read_from_its_preset():
    from cliperase.config import PAPER_SETTING

    assert PAPER_SETTING == yaml.safe_load((GROUP_DIRS["unlearn"] / "paper.yaml").read_text()) != {}


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_committed_yaml_resolves_into_its_dataclass(path: Path):
    from mmcore.config import resolve_config

    cfg = resolve_config(_dataclass(path), path, {})  # an unknown key is an error naming FILE:LINE
    if hasattr(cfg, "arch"):
        from sasrnet.config import model_config

        model_config(cfg.model, cfg.size, cfg.arch)


def _names(group: str, prefix: str = "") -> list[str]:
    return sorted(p.stem.removeprefix(prefix) for p in GROUP_DIRS[group].glob(f"{prefix}*.yaml"))


def test_preset_names_and_files_agree():
    from mm_cli import avqa_model_cmds, clip_cmds, unlearn_cmds

    assert sorted(unlearn_cmds.PRESETS) == _names("unlearn")
    assert sorted(clip_cmds.PRETRAIN_PRESETS) == _names("clip", "pretrain-")
    assert {f"{m}-{p}" for m in ("sasrnet", "avst") for p in avqa_model_cmds.PRESETS} == set(_names("avqa"))


def test_default_presets_are_the_defaults_and_paper_is_the_paper_setting():
    from cliperase.config import UnlearnConfig
    from mmcore.clip_train import ClipTrainConfig
    from mmcore.config import resolve_config

    assert resolve_config(UnlearnConfig, GROUP_DIRS["unlearn"] / "default.yaml", {}) == UnlearnConfig()
    # every field but `model` (a model named nowhere is the cached tiny CLIP)
    assert set(yaml.safe_load((GROUP_DIRS["unlearn"] / "default.yaml").read_text())) == \
        {f.name for f in dataclasses.fields(UnlearnConfig)} - {"model"}
    assert resolve_config(ClipTrainConfig, GROUP_DIRS["clip"] / "pretrain-default.yaml", {}) == ClipTrainConfig()


def test_cpu_benchmark_presets_are_the_recorded_benchmark_settings():
    shapes = json.loads((ROOT / "benchmarks/results/unlearn_shapes.json").read_text())
    preset = yaml.safe_load((GROUP_DIRS["unlearn"] / "cpu-benchmark.yaml").read_text())
    assert {k: preset[k] for k in ("method", "lr", "steps")} == shapes["settings"]["cliperase"]
    assert preset["forget"] == {"classes": ["circle"]}
    leak = yaml.safe_load((GROUP_DIRS["clip"] / "pretrain-membership-leak.yaml").read_text())
    assert leak == {k: shapes["leaking_membership"]["pretrain"][k] for k in ("n_train", "steps", "eval_every")}


def _print_config(tmp_path, *args: str) -> dict:
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "out"), "--print-config"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "out").exists()
    return json.loads(r.output)


def test_unlearn_preset_applies_under_the_config_file_and_options(tmp_path):
    cfg = _print_config(tmp_path, "unlearn", "run", "--preset", "cpu-benchmark")
    assert (cfg["lr"], cfg["steps"], cfg["forget"]["classes"]) == (1e-4, 60, ["circle"])
    assert cfg["model"] == "mm-tiny-clip"  # not named: the cached tiny CLIP, as without a preset
    (tmp_path / "x.yaml").write_text("steps: 5\n")
    cfg = _print_config(tmp_path, "unlearn", "run", "--preset", "cpu-benchmark", "--config", str(tmp_path / "x.yaml"))
    assert (cfg["steps"], cfg["lr"]) == (5, 1e-4)
    cfg = _print_config(tmp_path, "unlearn", "run", "--preset", "cpu-benchmark", "--steps", "3",
                        "--forget-classes", "square")
    assert (cfg["steps"], cfg["forget"]["classes"]) == (3, ["square"])
    cfg = _print_config(tmp_path, "unlearn", "compare", "--preset", "paper")
    assert (cfg["towers"], cfg["forget_text"]) == ("both", "caption")
    r = runner.invoke(app, ["unlearn", "run", "--preset", "papr", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "cpu-benchmark" in r.output


def test_clip_pretrain_preset_applies(tmp_path):
    cfg = _print_config(tmp_path, "clip", "pretrain", "--preset", "membership-leak", "--seed", "2")
    assert (cfg["n_train"], cfg["steps"], cfg["eval_every"], cfg["seed"]) == (300, 300, 0, 2)
    assert _print_config(tmp_path, "clip", "pretrain", "--preset", "default") == \
        _print_config(tmp_path, "clip", "pretrain")
    r = runner.invoke(app, ["clip", "pretrain", "--help"])
    assert "--preset" in r.output and "membership-leak" in r.output
