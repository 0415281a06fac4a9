"""configs/benchmarks/<name>.yaml: one per benchmark whose result the README shows, each parsed by that
benchmark's own argparse (its build_parser) without running it, so the files cannot drift from the options."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import render_readme  # noqa: E402
from benchmarks._common import CONFIGS, config_defaults, parse_args  # noqa: E402

FILES = sorted(CONFIGS.glob("*.yaml"))
README_BENCHMARKS = [name for name, _ in render_readme.SECTIONS]


def test_every_readme_result_has_a_config_file_and_every_file_a_benchmark():
    from benchmarks.__main__ import available

    assert sorted(p.stem for p in FILES) == sorted(README_BENCHMARKS)
    assert set(README_BENCHMARKS) <= set(available())


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_config_file_parses_into_its_benchmark(path: Path):
    module = importlib.import_module(f"benchmarks.{path.stem}")
    values = config_defaults(module.build_parser(), path)  # an unknown key or a bad value raises here
    args = parse_args(module.build_parser(), ["--config", str(path)])
    for key, value in values.items():
        got = getattr(args, key)
        assert (str(got) if isinstance(got, Path) else got) == value, key


def test_command_line_wins_over_the_file_and_bad_keys_are_named(tmp_path: Path, capsys):
    from benchmarks import unlearn_defaults

    path = CONFIGS / "unlearn_defaults.yaml"
    assert parse_args(unlearn_defaults.build_parser(), ["--config", str(path), "--seeds", "5"]).seeds == "5"
    assert parse_args(unlearn_defaults.build_parser(), ["--seeds", "5", "--config", str(path)]).seeds == "5"
    assert parse_args(unlearn_defaults.build_parser(), ["--config", str(path)]).seeds == \
        yaml.safe_load(path.read_text())["seeds"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("sedes: 0,1\n")
    with pytest.raises(SystemExit):
        parse_args(unlearn_defaults.build_parser(), ["--config", str(bad)])
    err = capsys.readouterr().err
    assert "unknown key 'sedes'" in err and "did you mean 'seeds'" in err
    bad.write_text("quick: 1\n")
    with pytest.raises(ValueError, match="flag"):
        config_defaults(unlearn_defaults.build_parser(), bad)


def test_readme_names_the_reproducing_command_of_every_result():
    text = render_readme.render()
    for name in README_BENCHMARKS:
        assert f"uv run python -m benchmarks {name} --config configs/benchmarks/{name}.yaml" in text, name


def test_benchmarks_readme_is_rendered_from_the_committed_results():
    # a committed JSON whose table was not regenerated leaves benchmarks/README.md stale
    assert render_readme.main(["--check"]) == 0, "run: uv run python benchmarks/render_readme.py"


def test_top_level_readme_stays_short():
    # issue #31: what it is, the two commands, install, the commands, library use, the departures in short
    lines = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; results go to benchmarks/README.md, details to docs/"
