"""Typed run configs: dataclass defaults, merged with a TOML/YAML file, then CLI overrides.

    cfg = resolve_config(PretrainConfig, config_file="run.toml", overrides={"train.lr": 1e-3})

Nested dataclasses map to nested tables. Unknown keys are an error (a typo must not be ignored): the
message names where the key came from (``run.yaml:3`` for a file, ``--set arch.dimm=8`` for an override),
its full dotted name and the closest valid key.
The resolved config is saved with :func:`save_config` next to the results.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mmcore.errors import ConfigError, DataError
from mmcore.io import write_json

T = TypeVar("T")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) or JSON file into a dict."""
    return _read_config_file(path)[0]


def _read_config_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text (for :func:`_key_lines`)."""
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
    return data, text


# --------------------------------------------------------------------------- where a key came from


def _dotted(parts: list[str]) -> str:
    return ".".join(p.strip().strip("\"'") for p in parts)


def _toml_key_lines(text: str) -> dict[str, int]:
    """Dotted key -> 1-based line of its first definition (``[table]`` headers, ``a.b = ...`` keys)."""
    lines: dict[str, int] = {}
    table: list[str] = []
    for i, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if m := re.match(r"^\[\[?([^\]]+)\]\]?", s):
            table = m.group(1).split(".")
            keys = table
        elif m := re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", s):
            keys = [*table, *m.group(1).split(".")]
        else:
            continue
        for k in range(1, len(keys) + 1):
            lines.setdefault(_dotted(keys[:k]), i)
    return lines


def _yaml_key_lines(text: str) -> dict[str, int]:
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    lines.setdefault(prefix + str(k.value), k.start_mark.line + 1)
                    walk(v, f"{prefix}{k.value}.")

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return lines


def _json_key_lines(data: dict[str, Any], text: str) -> dict[str, int]:
    """JSON keeps no positions: each key's line is that of its first ``"key":`` after its parent's."""
    rows = text.splitlines()
    lines: dict[str, int] = {}

    def walk(d: dict[str, Any], prefix: str, start: int) -> None:
        for k, v in d.items():
            pat = re.compile(rf"{re.escape(json.dumps(k))}\s*:")
            line = next((i for i in range(start, len(rows)) if pat.search(rows[i])), None)
            if line is None:
                continue
            lines.setdefault(prefix + k, line + 1)
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.", line)

    walk(data, "", 0)
    return lines


def _key_lines(path: Path, data: dict[str, Any], text: str) -> dict[str, int]:
    if path.suffix == ".toml":
        return _toml_key_lines(text)
    if path.suffix in (".yaml", ".yml"):
        return _yaml_key_lines(text)
    return _json_key_lines(data, text)


def _flat_keys(d: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every dotted key of a nested dict, tables included."""
    for k, v in d.items():
        yield prefix + str(k)
        if isinstance(v, Mapping):
            yield from _flat_keys(v, f"{prefix}{k}.")


def _where(sources: Mapping[str, str] | None, key: str) -> str:
    """``"run.yaml:3: "`` or ``"--set a.b=1: "`` for dotted ``key`` (or a table above or below it); ``""`` if unknown."""
    if not sources:
        return ""
    if key in sources:
        return sources[key] + ": "
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):  # a table holding the key
        if (up := ".".join(parts[:n])) in sources:
            return sources[up] + ": "
    below = sorted(k for k in sources if k.startswith(key + "."))  # a key inside an unknown table
    return sources[below[0]] + ": " if below else ""


def _field_names(cls: Any, prefix: str = "") -> list[str]:
    """Every valid dotted key of dataclass ``cls`` (nested dataclass fields included)."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out.extend(_field_names(hints[f.name], f"{prefix}{f.name}."))
    return out


def _closest(name: str, local: list[str], prefix: str, everywhere: list[str]) -> str | None:
    """The valid key closest to ``prefix + name``: a field of the same table, else one of the same (or a
    similar) name in another table (``classes`` -> ``forget.classes``)."""
    if close := difflib.get_close_matches(name, local, n=1, cutoff=0.6):
        return prefix + close[0]
    tails = {k.rsplit(".", 1)[-1]: k for k in reversed(everywhere)}
    if close := difflib.get_close_matches(name, list(tails), n=1, cutoff=0.8):
        return tails[close[0]]
    return None


class _Ctx:
    """What error messages need while building: where each key came from, and every valid key."""

    def __init__(self, root: Any, prefix: str, sources: Mapping[str, str] | None):
        self.sources = sources or {}
        self.everywhere = _field_names(root, prefix)

    def where(self, key: str) -> str:
        return _where(self.sources, key)


def _coerce(value: Any, tp: Any, key: str, ctx: _Ctx | None = None) -> Any:
    where = ctx.where(key) if ctx else ""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key, ctx)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}config key {key!r} must be a table")
        return _build(tp, value, prefix=f"{key}.", ctx=ctx)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return type(value)(_coerce(v, inner, key, ctx) for v in value) if origin is list else tuple(
            _coerce(v, inner, key, ctx) for v in value
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
        raise ConfigError(f"{where}config key {key!r}: cannot read {value!r} as {tp.__name__}") from None
    return value


def unknown_key_message(key: str, valid: list[str], cls_name: str, *, where: str = "", prefix: str = "",
                        everywhere: list[str] | None = None) -> str:
    """``"run.yaml:3: unknown config key 'train.stepz' for Inner; did you mean 'train.steps'?"``.

    ``key``: the unknown name inside its table, ``valid``: that table's fields, ``prefix``: the table's dotted
    name (``"train."``), ``where``: its source (``"run.yaml:3: "``), ``everywhere``: every valid dotted key
    (for a key put in the wrong table)."""
    close = _closest(key, valid, prefix, everywhere or [])
    listed = f" (valid: {', '.join(prefix + v for v in valid)})" if len(valid) <= 12 else ""
    hint = f"; did you mean {close!r}?" if close else listed
    return f"{where}unknown config key {prefix + key!r} for {cls_name}{hint}"


def _build(cls: type[T], data: dict[str, Any], prefix: str = "", ctx: _Ctx | None = None) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError("; ".join(
            unknown_key_message(u, list(fields), cls.__name__, prefix=prefix,
                                where=ctx.where(prefix + u) if ctx else "", everywhere=ctx.everywhere if ctx else None)
            for u in unknown
        ))
    kwargs = {k: _coerce(v, hints[k], prefix + k, ctx) for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(d: dict[str, Any], dotted: str, value: Any, where: str = "") -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"{where}override {dotted!r}: {p!r} is not a table")
    d[parts[-1]] = value


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(cls: type[T], config_file: Any = None, overrides: dict[str, Any] | None = None, **kw: Any) -> T:
    """Defaults of ``cls`` < ``preset`` < values in ``config_file`` < ``overrides`` (dotted keys; None values skipped).

    Errors name where a bad key came from: ``FILE:LINE`` for the file, ``sources[key]`` for an override
    (default ``--set key=value``). Keywords as :func:`resolve_config_with_sources`: ``prefix`` (the dotted name
    ``cls`` has for the user, ``"arch."`` for a table validated on its own), ``sources``, ``preset``."""
    return resolve_config_with_sources(cls, config_file, overrides, **kw)[0]


def resolve_config_with_sources(
    cls: type[T],
    config_file: str | Path | Sequence[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    prefix: str = "",
    sources: Mapping[str, str] | None = None,
    preset: Mapping[str, Any] | None = None,
    preset_label: str = "--preset",
) -> tuple[T, dict[str, str]]:
    """:func:`resolve_config`, and where each key that is not a default came from (dotted key ->
    ``"run.yaml:3"`` / ``"--set a.b=1"``): for checking a free-form table later with the same messages.

    ``preset`` (a dict of dotted keys, e.g. a command's ``--preset``) sits between the defaults and the file;
    ``config_file`` may be a list of files, later ones winning (a committed preset file, then the user's)."""
    base = dataclasses.asdict(cls())  # type: ignore[call-overload]
    where: dict[str, str] = {}
    for k, v in (preset or {}).items():
        where[prefix + k] = preset_label
        _set_dotted(base, k, v, where=preset_label + ": ")
    files = [] if config_file is None else [config_file] if isinstance(config_file, str | Path) else list(config_file)
    for file in files:
        path = Path(file)
        data, text = _read_config_file(path)
        lines = _key_lines(path, data, text)
        for k in _flat_keys(data):
            where[prefix + k] = f"{path}:{lines[k]}" if k in lines else str(path)
        base = _deep_merge(base, data)
    for k, v in (overrides or {}).items():
        if v is not None:
            label = (sources or {}).get(k) or f"--set {prefix}{k}={v}"
            for old in [o for o in where if o == prefix + k or o.startswith(f"{prefix}{k}.")]:
                del where[old]  # the override replaces what the file said
            where[prefix + k] = label
            _set_dotted(base, k, v, where=label + ": ")
    return _build(cls, base, prefix=prefix, ctx=_Ctx(cls, prefix, where)), where


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
