"""Typed run configs: dataclass defaults, merged with a TOML/YAML file, then CLI overrides.

    cfg = resolve_config(PretrainConfig, config_file="run.toml", overrides={"train.lr": 1e-3})

Nested dataclasses map to nested tables. Unknown keys are an error (a typo must not be ignored).
The resolved config is saved with :func:`save_config` next to the results.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from mmcore.errors import ConfigError, DataError
from mmcore.io import write_json

T = TypeVar("T")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) or JSON file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            import json

            data = json.loads(text)
        else:
            raise DataError(path, "config must be .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise DataError(path, f"cannot parse config: {e}") from None
    except Exception as e:  # yaml.YAMLError
        if type(e).__module__.startswith("yaml"):
            raise DataError(path, f"cannot parse config: {e}") from None
        raise
    if not isinstance(data, dict):
        raise DataError(path, "config must be a mapping at the top level")
    return data


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a table")
        return _build(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return type(value)(_coerce(v, inner, key) for v in value) if origin is list else tuple(
            _coerce(v, inner, key) for v in value
        )
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: cannot read {value!r} as {tp.__name__}") from None
    return value


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(prefix + u for u in unknown)} for {cls.__name__}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a table")
    d[parts[-1]] = value


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(
    cls: type[T],
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Defaults of ``cls`` < values in ``config_file`` < ``overrides`` (dotted keys; None values skipped)."""
    base = dataclasses.asdict(cls())  # type: ignore[call-overload]
    if config_file is not None:
        base = _deep_merge(base, load_config_file(config_file))
    for k, v in (overrides or {}).items():
        if v is not None:
            _set_dotted(base, k, v)
    return _build(cls, base)


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``--set key.sub=value`` options."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Save the fully resolved config as JSON (atomically)."""
    return write_json(path, config_to_dict(cfg))
