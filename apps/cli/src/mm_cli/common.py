"""Helpers shared by the command modules. Nothing here imports torch: `mm --help` must stay fast."""

from __future__ import annotations

import difflib
import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "MM_DEBUG"


def _created_top(out: Any) -> Path | None:
    """The outermost directory of ``out`` (itself or a parent) that does not exist yet."""
    if not isinstance(out, str | Path):
        return None
    top, p = None, Path(out).expanduser().absolute()
    while not p.exists() and p != p.parent:
        top, p = p, p.parent
    return top


def _remove_if_empty(top: Path | None) -> None:
    """Remove ``top`` (created by this run) when it holds no file: a failed run leaves no empty output
    directory behind. Only the main process (RANK 0 or unset) removes anything."""
    if top is None or not top.is_dir() or os.environ.get("RANK", "0") != "0":
        return
    if all(p.is_dir() and not p.is_symlink() for p in top.rglob("*")):
        shutil.rmtree(top, ignore_errors=True)


def user_errors(fn: F) -> F:
    """Turn user errors (mmcore.errors.MMError, missing files) into one red line and exit code 2.

    ``mm --debug ...`` (or MM_DEBUG=1) re-raises them with the full traceback. When the command fails,
    an ``out`` directory it created and left without any file is removed (never one that existed before)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        created = _created_top(kwargs.get("out"))
        try:
            return _reporting_user_errors(fn, *args, **kwargs)
        except BaseException as e:
            if not (isinstance(e, typer.Exit) and e.exit_code == 0):
                _remove_if_empty(created)
            raise

    return wrapper  # type: ignore[return-value]


def _reporting_user_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:
        from mmcore.errors import MMError

        if os.environ.get(DEBUG_ENV) == "1" or not isinstance(e, MMError | FileNotFoundError):
            raise
        from rich.console import Console

        msg = str(e) if isinstance(e, MMError) else f"{e.filename}: file not found"
        Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print a list of dicts as a rich table (floats to 4 significant digits)."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    columns = columns or list(rows[0].keys())
    table = Table(title=title)
    for c in columns:
        table.add_column(str(c), justify="right" if isinstance(rows[0].get(c), int | float) else "left")
    for r in rows:
        table.add_row(*[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns])
    Console().print(table)


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr)


def check_image_text_dataset(name: str) -> None:
    """A misspelt dataset name is an MMError with a spelling hint before any heavy import (the registry is
    torch-free)."""
    from mmcore.data.registry import dataset_spec

    dataset_spec(name)


def dataset_help() -> str:
    """``--dataset``'s help: the registered image-text datasets."""
    from mmcore.data.registry import image_text_datasets

    return " | ".join(image_text_datasets()) + "."


# The files of a finished pretraining run, per model family (mmcore.encoders.family): what a cached tiny model needs.
TINY_MODEL_FILES = {"clip": ("metrics.json", "model.safetensors", "clip_config.json"),
                    "blip": ("metrics.json", "model/config.json", "model/model.safetensors")}
# `--tiny` smoke sizes of the cached models (seconds, meaningless numbers: the test suite's)
MICRO_PRETRAIN = {"n_train": 256, "n_test": 64, "steps": 4, "batch_size": 32, "warmup": 1, "eval_every": 0,
                  "checkpoint_every": 0}
MICRO_MODELS = {"clip": {"model": "mm-micro-clip"}, "blip": {"model": "mm-micro-blip", "retrieval_n": 20, "rerank_k": 4}}


def tiny_model_dir(family: str = "clip", seed: int = 0, micro: bool = False, cache: Path | None = None) -> Path:
    """Where the tiny model of ``family`` (its pretraining defaults, with ``seed``) is cached: CACHE/tiny-FAMILY-seedN
    (micro-FAMILY-seedN at the smoke sizes)."""
    from mmcore.io import default_cache_dir

    return (cache or default_cache_dir()).expanduser() / f"{'micro' if micro else 'tiny'}-{family}-seed{seed}"


def tiny_model_ready(family: str, path: Path) -> bool:
    return all((path / f).is_file() for f in TINY_MODEL_FILES[family])


def pretrain_tiny_model(family: str, path: Path, seed: int = 0, micro: bool = False) -> dict:
    """Pretrain the tiny model of ``family`` into ``path`` (its config's defaults; ``micro``: the smoke sizes);
    returns its metrics. Imports torch."""
    import dataclasses

    if family == "clip":
        from mmcore.clip_train import ClipTrainConfig as Config
        from mmcore.recipes.clip_pretrain import pretrain
    else:
        from mmcore.blip_train import BlipTrainConfig as Config
        from mmcore.recipes.blip_pretrain import pretrain
    cfg = Config(seed=seed)
    if micro:
        cfg = dataclasses.replace(cfg, **MICRO_PRETRAIN, **MICRO_MODELS[family])
    return pretrain(cfg, path, overwrite=True)


def ensure_tiny_model(family: str = "clip", seed: int = 0, micro: bool = False, cache: Path | None = None) -> tuple[Path, bool]:
    """The cached tiny model of ``family`` (trained now when missing) and whether it was reused."""
    path = tiny_model_dir(family, seed, micro, cache)
    if tiny_model_ready(family, path):
        return path, True
    pretrain_tiny_model(family, path, seed, micro)
    return path, False


def cached_tiny_model(family: str = "clip") -> Path | None:
    """The tiny model of ``family`` trained and cached (by `mm demo` for CLIP, :func:`ensure_tiny_model`), seed 0
    first, if there is one."""
    from mmcore.io import default_cache_dir

    cache = default_cache_dir().expanduser()
    first = f"tiny-{family}-seed0"
    dirs = sorted(cache.glob(f"tiny-{family}-seed*"), key=lambda d: (d.name != first, d.name))
    return next((d for d in dirs if tiny_model_ready(family, d)), None)


def cached_tiny_clip() -> Path | None:
    """The tiny CLIP `mm demo` trained and cached (seed 0 first), if there is one."""
    return cached_tiny_model("clip")


def choose_clip_model(model: str | None, pretrained: str | None, random_init: bool,
                      default_arch: str = "mm-tiny-clip") -> str:
    """The CLIP a command runs on; random weights only when asked for with ``--random-init``.

    ``model`` None (not given anywhere): the tiny CLIP cached by `mm demo`, else an error saying how to
    get one. An architecture name without ``pretrained`` is random weights: an error unless
    ``random_init``, then a warning. A missing or wrong model path is an error here, before torch loads."""
    from mmcore.encoders.clip import RANDOM_INIT_WARNING, check_model_source, project_model_names
    from mmcore.errors import MMError
    from mmcore.io import CACHE_ENV, default_cache_dir

    get_one = ("train one with `mm clip pretrain --out DIR` and pass --model DIR (`mm demo` caches one), "
               "or pass --random-init to run on untrained weights on purpose")
    if model is None and not random_init and not pretrained:
        cached = cached_tiny_clip()
        if cached is None:
            raise MMError(f"no --model given and no cached tiny CLIP in {default_cache_dir()} "
                          f"(${CACHE_ENV}); {get_one}")
        typer.echo(f"using the cached tiny CLIP {cached} (--model DIR to choose another)", err=True)
        return str(cached)
    model = default_arch if model is None else model
    from mmcore.encoders.family import detect_family

    if detect_family(model) not in (None, "clip"):  # a saved model of another family (a BLIP run): trained weights
        if random_init:
            raise MMError(f"--random-init is for an architecture name; {model!r} is a saved model directory")
        return model
    if check_model_source(model, pretrained) == "name" and not pretrained:
        if not random_init:
            close = [] if model in project_model_names() else difflib.get_close_matches(model, project_model_names(), 1)
            hint = f" (not a directory; did you mean {close[0]!r}?)" if close else ""
            raise MMError(f"model {model!r}{hint} names an architecture, not trained weights: it would run on random "
                          f"weights. Pass --pretrained TAG/FILE with it for trained ones, or {get_one}")
        typer.echo(f"warning: {RANDOM_INIT_WARNING} ({model}, --random-init)", err=True)
    elif random_init:
        raise MMError(f"--random-init is for an architecture name without --pretrained; {model!r}"
                      + (f" with --pretrained {pretrained!r}" if pretrained else "") + " has trained weights")
    return model


# --------------------------------------------------------------------------- one config path for every run command

# Written in the README; every run command resolves its config through :func:`run_config`.
PRECEDENCE = "defaults < --preset < --config FILE < explicit options < --set key=value"
CONFIG_HELP = "TOML/YAML/JSON config file ({what} fields)."
SET_HELP = "Override a config field: key=value (repeatable, dotted keys); applied last, over every option."
PRINT_CONFIG_HELP = "Print the resolved config as JSON and exit (nothing is loaded or written)."


# The committed run recipes, package data: group -> the package whose configs/<group>/ holds them (mmcore.presets).
PRESET_PACKAGES = {"unlearn": "cliperase", "clip": "mmcore", "avqa": "sasrnet"}


def preset_file(group: str, preset: str, presets: dict[str, str], stem: str | None = None) -> Path:
    """The file of ``--preset`` ``preset`` (``presets``: name -> help): <package>/configs/<group>/<stem>.yaml."""
    from mmcore.errors import ConfigError
    from mmcore.presets import preset_path

    if preset not in presets:
        raise ConfigError(f"unknown --preset {preset!r}; choose one of {', '.join(presets)}")
    return preset_path(PRESET_PACKAGES[group], group, stem or preset)


def preset_option(group: str, presets: dict[str, str], pattern: str = "<preset>") -> Any:
    """``--preset NAME``: a committed recipe <package>/configs/<group>/<pattern>.yaml, under --config FILE."""
    return typer.Option(None, "--preset", help=f"A committed recipe, {PRESET_PACKAGES[group]}/configs/{group}/{pattern}.yaml: "
                        + "; ".join(f"{k}: {v}" for k, v in presets.items())
                        + ". A --config file on top overrides its keys.")


def config_option(what: str) -> Any:
    return typer.Option(None, "--config", help=CONFIG_HELP.format(what=what))


def set_option() -> Any:
    return typer.Option(None, "--set", help=SET_HELP)


def print_config_option() -> Any:
    return typer.Option(False, "--print-config", help=PRINT_CONFIG_HELP)


def run_config(cls: type, *, config: Any, set_: list[str] | None, options: dict[str, Any],
               print_config: bool = False, preset: dict[str, Any] | None = None, preset_files: list[Any] = (),
               preset_label: str = "--preset", option_names: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
    """The config of a run command, by :data:`PRECEDENCE`: ``cls`` defaults < ``preset`` (dotted values) or
    ``preset_files`` < ``config`` < ``options`` (config key -> value; None = not given) < ``--set`` items.

    Returns (config, where each non-default key came from). ``print_config``: print it and exit 0 here."""
    from mmcore.config import parse_set_options, resolve_config_with_sources

    given = {k: v for k, v in options.items() if v is not None}
    names = option_names or {}
    sources = {k: f"--{names.get(k, k.replace('_', '-'))} {v}" for k, v in given.items()}
    sets = parse_set_options(set_)
    for k, v in sets.items():
        sources[k] = f"--set {k}={v}"
    files = [*preset_files, *([config] if config is not None else [])]
    cfg, where = resolve_config_with_sources(cls, files or None, {**given, **sets}, sources=sources,
                                             preset=preset, preset_label=preset_label)
    if print_config:
        import dataclasses
        import json

        typer.echo(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        raise typer.Exit(0)
    return cfg, where
