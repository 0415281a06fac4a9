"""One config path for every run command (a command that writes into --out): `--config FILE`, `--set key=value`,
`--print-config`, and one precedence rule, mm_cli.common.PRECEDENCE
(defaults < --preset < --config FILE < explicit options < --set), checked command by command; and `--help`
shows each option's default, the same value the resolved config has."""

from __future__ import annotations

import json
import re

import pytest
import typer
from mm_cli.common import PRECEDENCE
from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()
# Conversions and the showcase write into --out but run nothing configurable.
EXEMPT = {"demo": "the showcase: a fixed story with a handful of switches",
          "avqa import-official": "a checkpoint conversion", "clip export": "a checkpoint conversion"}

# command -> (required options, (option, config key, option value, --set value, expected from each))
CASES: dict[str, tuple[list[str], tuple[str, str, str, str]]] = {
    "clip pretrain": (["--out", "{out}"], ("--seed", "seed", "3", "7")),
    "clip eval": (["--out", "{out}"], ("--seed", "seed", "3", "7")),
    "unlearn run": (["--out", "{out}"], ("--steps", "steps", "3", "7")),
    "unlearn eval": (["--model", "m", "--out", "{out}"], ("--seed", "seed", "3", "7")),
    "unlearn compare": (["--out", "{out}"], ("--steps", "steps", "3", "7")),
    "unlearn diffusion-eval": (["--original", "a", "--unlearned", "b", "--pipeline", "p", "--forget-prompts", "a circle",
                                "--out", "{out}"], ("--steps", "num_inference_steps", "3", "7")),
    "diffusion eval": (["--original", "a", "--unlearned", "b", "--pipeline", "p", "--forget-prompts", "a circle",
                        "--out", "{out}"], ("--steps", "num_inference_steps", "3", "7")),
    "diffusion pretrain": (["--clip", "c", "--out", "{out}"], ("--seed", "seed", "3", "7")),
    "avqa synth": (["--out", "{out}"], ("--videos", "videos", "3", "7")),
    "avqa extract-features": (["--videos", "v", "--out", "{out}"], ("--fps", "fps", "3", "7")),
    "avqa pretrain-grounding": (["--out", "{out}"], ("--epochs", "epochs", "3", "7")),
    "avqa train": (["--out", "{out}"], ("--epochs", "epochs", "3", "7")),
    "avqa eval": (["--checkpoint", "c", "--out", "{out}"], ("--batch-size", "batch_size", "3", "7")),
}
# option -> config key where the names differ
ALIASES = {"unlearn diffusion-eval": {"--steps": "num_inference_steps"}, "diffusion eval": {"--steps": "num_inference_steps"},
           "avqa eval": {"--ann": "annotations"}}
# options whose default is described in words (what the command does when it is left out)
DESCRIBED = {"--model"}


def _commands(group=None, prefix: str = "") -> dict:
    group = group or typer.main.get_command(app)
    out: dict = {}
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(cmd, "commands"):  # a group (typer ships its own click)
            out.update(_commands(cmd, full + " "))
        else:
            out[full] = cmd
    return out


def _opts(cmd) -> dict:
    return {o: p for p in cmd.params if getattr(p, "param_type_name", "") == "option" for o in p.opts}


COMMANDS = _commands()
RUN = sorted(n for n, c in COMMANDS.items() if "--out" in _opts(c) and n not in EXEMPT)


def test_every_run_command_has_a_case_and_the_precedence_is_in_the_readme():
    assert set(RUN) == set(CASES), "add the new run command to CASES (or EXEMPT, with the reason)"
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert PRECEDENCE in readme


def _print_config(name: str, tmp_path, extra: list[str]) -> dict:
    required, _ = CASES[name]
    out = tmp_path / "out"
    args = [*name.split(), *[a.format(out=out) for a in required], *extra, "--print-config"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, f"mm {' '.join(args)}\n{r.output}"
    assert not out.exists(), "--print-config must write nothing"
    return json.loads(r.output)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_file_then_option_then_set(name, tmp_path):
    opts = _opts(COMMANDS[name])
    assert {"--config", "--set", "--print-config"} <= set(opts), name
    _, (flag, key, flag_value, set_value) = CASES[name]
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(f"{key}: 5\n")
    base = _print_config(name, tmp_path, [])
    assert base[key] not in (3, 5, 7)
    assert _print_config(name, tmp_path, ["--config", str(cfg_file)])[key] == 5
    assert _print_config(name, tmp_path, ["--config", str(cfg_file), flag, flag_value])[key] == 3
    # the documented winner: --set over the explicit option, whatever their order on the line
    for extra in ([flag, flag_value, "--set", f"{key}={set_value}"], ["--set", f"{key}={set_value}", flag, flag_value]):
        assert _print_config(name, tmp_path, ["--config", str(cfg_file), *extra])[key] == 7


def test_a_preset_sits_under_the_config_file(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("steps: 5\n")
    extra = ["--preset", "test"]
    preset = _print_config("diffusion pretrain", tmp_path, extra)
    assert preset["steps"] == 4 and preset["detector_steps"] == 4  # the test preset's values
    layered = _print_config("diffusion pretrain", tmp_path, [*extra, "--config", str(cfg_file)])
    assert layered["steps"] == 5 and layered["detector_steps"] == 4


def _lookup(cfg: dict, key: str):
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return KeyError
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_every_default(name, tmp_path):
    cmd = COMMANDS[name]
    r = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "500", "TERMINAL_WIDTH": "500"})
    assert r.exit_code == 0, r.output
    # a help text ending in " ." lost a bracketed default to rich markup
    assert not re.search(r" \.(\s|│|$)", r.output), r.output
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "option" and p.help:
            assert "[default" not in p.help, f"{name} {p.opts[0]}: use show_default= (rich markup eats [default: ...])"
    if name not in CASES:
        return
    cfg = _print_config(name, tmp_path, [])
    for opt, p in _opts(cmd).items():
        if not opt.startswith("--") or p.is_flag or p.required or opt in DESCRIBED or opt != p.opts[0]:
            continue
        key = ALIASES.get(name, {}).get(opt, opt[2:].replace("-", "_"))
        value = _lookup(cfg, key)
        if value is KeyError or value is None or value == []:  # None / []: nothing unless given
            continue
        shown = p.show_default if isinstance(p.show_default, str) else (p.default if p.default is not None else None)
        assert shown is not None, f"mm {name} {opt}: --help shows no default (the config's is {value!r})"
        assert str(shown) == str(value), f"mm {name} {opt}: --help says {shown!r}, the config {value!r}"
