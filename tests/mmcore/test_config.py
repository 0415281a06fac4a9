from dataclasses import dataclass, field

import pytest
from mmcore.config import parse_set_options, resolve_config, save_config
from mmcore.errors import ConfigError, DataError
from mmcore.io import read_json


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Outer:
    name: str = "a"
    flag: bool = False
    tags: list[str] = field(default_factory=lambda: ["x"])
    maybe: int | None = None
    train: Inner = field(default_factory=Inner)


def test_defaults_file_and_overrides_merge_in_order(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('name = "file"\n[train]\nsteps = 50\n')
    cfg = resolve_config(Outer, f, {"train.lr": "0.5", "flag": "true", "tags": "a,b", "maybe": "3"})
    assert cfg.name == "file" and cfg.train.steps == 50 and cfg.train.lr == 0.5
    assert cfg.flag is True and cfg.tags == ["a", "b"] and cfg.maybe == 3


def test_yaml_config(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.25\n")
    assert resolve_config(Outer, f).train.lr == 0.25


def test_unknown_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="train.lrr"):
        resolve_config(Outer, None, {"train.lrr": 1})


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="train.steps"):
        resolve_config(Outer, None, {"train.steps": "many"})


def test_malformed_file_names_the_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("name = = 3")
    with pytest.raises(DataError, match="bad.toml"):
        resolve_config(Outer, f)


def test_set_options_and_save(tmp_path):
    assert parse_set_options(["a.b=1", "c = x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ConfigError):
        parse_set_options(["novalue"])
    save_config(Outer(), tmp_path / "config.json")
    assert read_json(tmp_path / "config.json")["train"]["steps"] == 10
