"""Shared benchmark plumbing: ``--config FILE`` for every benchmark's options, machine/version info, medians
after warm-up, result files."""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# configs/benchmarks/<name>.yaml: the settings of each committed result (`--config` of that benchmark)
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "benchmarks"
_NOT_CONFIG = ("help", "config")


def config_defaults(parser: argparse.ArgumentParser, path: str | Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` checked against ``parser``: keys are option dest names (``--clip-dir``:
    ``clip_dir``), values must fit the option (a flag takes true/false, a choice one of its choices).
    Raises ValueError naming the file and the key."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    actions = {a.dest: a for a in parser._actions if a.dest not in _NOT_CONFIG}
    for key, value in data.items():
        action = actions.get(key)
        if action is None:
            close = difflib.get_close_matches(str(key), actions, n=1)
            raise ValueError(f"{path}: unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" (keys: {', '.join(actions)})")
        if action.nargs == 0 and not isinstance(value, bool):
            raise ValueError(f"{path}: {key} is a flag; give true or false, got {value!r}")
        values = value if isinstance(value, list) else [value]
        if action.choices is not None and value is not None and any(v not in action.choices for v in values):
            raise ValueError(f"{path}: {key} must be among {', '.join(map(str, action.choices))}; got {value!r}")
    return data


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--config FILE`` added: the file's values (:func:`config_defaults`)
    become the defaults, so options given on the command line still win."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="YAML of option values (keys: option names with _ for -), under the command line; "
                             "the committed results' settings are in configs/benchmarks/<name>.yaml")
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path, default=None)
    given, _ = pre.parse_known_args(argv)
    if given.config is not None:
        try:
            # string values go through each option's type, as a string default does
            parser.set_defaults(**config_defaults(parser, given.config))
        except (OSError, ValueError) as e:
            parser.error(str(e))
    return parser.parse_args(argv)


def machine_info() -> dict[str, Any]:
    import torch

    versions = {}
    for pkg in ("torch", "torchvision", "torchaudio", "open_clip_torch", "transformers", "diffusers", "accelerate", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # Timings on a shared 2-core machine depend on what else ran: the 1/5/15-minute load at write time.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def timed_median(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs (plus min/max)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def write_result(name: str, result: dict[str, Any], out_dir: str | Path | None = None) -> Path:
    """Write OUT_DIR/NAME.json (default benchmarks/results) with machine info attached."""
    from mmcore.io import write_json

    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine_info(), **result}
    path = write_json(out / f"{name}.json", payload)
    print(f"wrote {path}")
    return path


def png_path(name: str, out_dir: str | Path | None = None) -> Path:
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}.png"


def publish(name: str, result: dict[str, Any], out_dir: str | Path | None, no_write: bool,
            plot: Callable[[dict[str, Any], Path], None]) -> None:
    """Print ``result`` (``no_write``) or draw its PNG with ``plot`` and write OUT_DIR/NAME.json."""
    if no_write:
        import json

        print(json.dumps(result, indent=1, default=str))
    else:
        plot(result, png_path(name, out_dir))
        write_result(name, result, out_dir)
