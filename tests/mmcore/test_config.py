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


# ---------------------------------------------------------------- where a bad key came from (issue 19)


@pytest.mark.parametrize("name, text, line", [
    ("c.toml", 'name = "a"\n\n[train]\nlr = 0.1\nstpes = 3\n', 5),
    ("c.yaml", "name: a\ntrain:\n  lr: 0.1\n  stpes: 3\n", 4),
    ("c.json", '{\n  "name": "a",\n  "train": {\n    "stpes": 3\n  }\n}\n', 4),
])
def test_unknown_file_key_names_file_line_dotted_key_and_closest(tmp_path, name, text, line):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        resolve_config(Outer, f)
    assert str(e.value) == f"{f}:{line}: unknown config key 'train.stpes' for Inner; did you mean 'train.steps'?"


def test_unknown_override_names_the_set_item_and_a_key_in_another_table():
    with pytest.raises(ConfigError, match=r"^--set train\.lrr=1: unknown config key 'train\.lrr' .*'train\.lr'\?$"):
        resolve_config(Outer, None, {"train.lrr": "1"})
    # the right name in the wrong table: the dotted key where it lives
    with pytest.raises(ConfigError, match=r"^--set steps=3: .*did you mean 'train\.steps'\?$"):
        resolve_config(Outer, None, {"steps": "3"})
    # nothing close: the table's valid keys
    with pytest.raises(ConfigError, match=r"'zzz' for Outer \(valid: name, flag, tags, maybe, train\)$"):
        resolve_config(Outer, None, {"zzz": "3"})
    # a caller may say where its overrides came from
    with pytest.raises(ConfigError, match=r"^my\.cfg:7: unknown config key 'stpes'"):
        resolve_config(Inner, None, {"stpes": 1}, sources={"stpes": "my.cfg:7"})


def test_bad_value_names_its_source(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[train]\nsteps = 'many'\n")
    with pytest.raises(ConfigError, match=r"c\.toml:2: config key 'train\.steps': cannot read 'many' as int"):
        resolve_config(Outer, f)
    with pytest.raises(ConfigError, match=r"^--set flag=maybe: config key 'flag'"):
        resolve_config(Outer, f, {"flag": "maybe", "train.steps": "2"})


def test_prefix_and_sources_for_a_table_checked_on_its_own(tmp_path):
    from mmcore.config import resolve_config_with_sources

    f = tmp_path / "c.yaml"
    f.write_text("name: a\ntrain:\n  lr: 0.1\n")
    cfg, sources = resolve_config_with_sources(Outer, f, {"train.steps": "4", "maybe": None})
    assert cfg.train.steps == 4 and sources == {"name": f"{f}:1", "train": f"{f}:2", "train.lr": f"{f}:3",
                                                "train.steps": "--set train.steps=4"}
    with pytest.raises(ConfigError, match=r"^--set arch\.stpes=2: unknown config key 'arch\.stpes' for Inner; "
                                          r"did you mean 'arch\.steps'\?$"):
        resolve_config(Inner, None, {"stpes": 2}, prefix="arch.")
