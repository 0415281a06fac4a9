"""Committed run recipes ("presets"): YAML files shipped as package data, ``<package>/configs/<group>/<name>.yaml``,
found through the import system, so an installed wheel has them as a checkout does. The one loader of the CLI's
``--preset``, the libraries (``cliperase.config.PAPER_SETTING``) and the benchmarks.

    load_preset("cliperase", "unlearn", "paper")   # -> {"towers": "both", "forget_text": "caption"}
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mmcore.errors import ConfigError


def preset_dir(package: str, group: str) -> Path:
    """``<package>/configs/<group>/`` of the installed (or checked-out) ``package``; the package is not imported."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"presets of {package!r}: no such package is installed")
    return Path(next(iter(spec.submodule_search_locations))) / "configs" / group


def preset_names(package: str, group: str, prefix: str = "") -> list[str]:
    """The preset names of a group (file stems, ``prefix`` removed), sorted."""
    return sorted(p.stem.removeprefix(prefix) for p in preset_dir(package, group).glob(f"{prefix}*.yaml"))


def preset_path(package: str, group: str, name: str) -> Path:
    """The file of preset ``name``; a ConfigError naming the choices when there is none."""
    path = preset_dir(package, group) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no preset {name!r} in {package}/configs/{group}/; choose one of "
                          f"{', '.join(preset_names(package, group)) or '(none)'}")
    return path


def load_preset(package: str, group: str, name: str) -> dict[str, Any]:
    """The settings of preset ``name`` as a dict (the file's keys, comments dropped)."""
    from mmcore.config import load_config_file

    return load_config_file(preset_path(package, group, name))
