"""The CLI answers `--help` without importing heavy libraries (fast start-up on a laptop or login node)."""

import subprocess
import sys

import pytest
from mm_cli.main import app
from typer.testing import CliRunner

HEAVY = ["torch", "open_clip", "transformers", "diffusers", "accelerate", "decord", "av", "numpy", "matplotlib"]


def test_importing_the_cli_imports_no_heavy_library():
    code = (
        "import sys, mm_cli.main; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported at CLI start-up: {out}"


@pytest.mark.parametrize(
    "args",
    [[], ["clip"], ["unlearn"], ["diffusion"], ["avqa"], ["bench"], ["demo"]],
    ids=lambda a: " ".join(a) or "mm",
)
def test_help_lists_commands(args):
    res = CliRunner().invoke(app, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_every_group_has_its_commands():
    runner = CliRunner()
    expected = {
        "clip": ["pretrain", "eval"],
        "unlearn": ["run", "eval", "compare", "diffusion-eval"],
        "diffusion": ["pretrain"],
        "avqa": ["stats", "synth", "extract-features", "train", "eval", "predict"],
    }
    for group, cmds in expected.items():
        out = runner.invoke(app, [group, "--help"]).output
        for c in cmds:
            assert c in out, f"`mm {group} {c}` missing from:\n{out}"
