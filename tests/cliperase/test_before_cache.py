"""The original model's metrics computed once and reused (cliperase.before_cache); n and standard error of
every accuracy; the timing record; one labelled progress stage per evaluation."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from cliperase.before_cache import before_cache, before_key
from cliperase.forget_sets import split_forget_retain
from cliperase.recipes.runner import load_data, run_unlearning
from cliperase_testutil import tiny_config
from mmcore.encoders.clip import create_clip, save_clip


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """mm-micro-clip's seeded random weights saved as a model directory (weights in a file, so cacheable)."""
    import torch

    torch.manual_seed(0)
    b = create_clip("mm-micro-clip")
    d = tmp_path_factory.mktemp("model") / "micro"
    save_clip(b.model, d, b.model_name, b.model_cfg)
    return d


def _key(cfg):
    train, test = load_data(cfg, 16)
    return before_key(cfg, split_forget_retain(train, test, cfg.forget), "cpu")


@pytest.mark.slow
def test_a_second_run_reuses_the_original_metrics_and_a_changed_input_misses(saved_model, tmp_path):
    cfg = tiny_config(model=str(saved_model))
    cache = tmp_path / "cache"
    first = run_unlearning(cfg, tmp_path / "a", cache_dir=cache)
    assert first["timing"]["before_cached"] is False and first["timing"]["eval_before_s"] > 0
    assert len(list((cache / "unlearn-before").glob("*.json"))) == 1
    second = run_unlearning(dataclasses.replace(cfg, method="ga", lr=3e-4), tmp_path / "b", cache_dir=cache)
    assert second["timing"]["before_cached"] is True  # another method, same model / data / eval settings
    assert second["before"] == json.loads(json.dumps(first["before"]))
    assert second["after"] != second["before"]  # the after block is always computed
    # a changed evaluation setting, data setting, seed or forget set is a different key: computed again
    changed = run_unlearning(dataclasses.replace(cfg, retrieval_max_pairs=8), tmp_path / "c", cache_dir=cache)
    assert changed["timing"]["before_cached"] is False
    assert changed["before"]["retrieval"]["gallery"]["n_retain_images"] == 8
    assert len(list((cache / "unlearn-before").glob("*.json"))) == 2
    assert run_unlearning(cfg, tmp_path / "d")["timing"]["before_cached"] is False  # no cache_dir: no cache


def test_the_key_names_exactly_the_evaluation_inputs(saved_model, tmp_path):
    cfg = tiny_config(model=str(saved_model))
    k = _key(cfg)
    assert k is not None and _key(dataclasses.replace(cfg, lr=1.0, steps=99, method="ft")) == k  # unlearning only
    for change in ({"seed": 1}, {"eval_max_samples": 10}, {"mia_max_samples": 8}, {"n_train": 60},
                   {"eval_templates": ["a drawing of a {}"]}):
        assert _key(dataclasses.replace(cfg, **change)) != k, change
    assert _key(dataclasses.replace(cfg, forget=dataclasses.replace(cfg.forget, classes=["square"]))) != k
    assert _key(dataclasses.replace(cfg, relearn=dataclasses.replace(cfg.relearn, enabled=False))) != k
    # other weights in the same directory: a different key
    import shutil

    import torch

    other = tmp_path / "other"
    shutil.copytree(saved_model, other)
    assert _key(dataclasses.replace(cfg, model=str(other))) == k  # same content, another path: same key
    torch.manual_seed(1)
    b = create_clip("mm-micro-clip")
    save_clip(b.model, other, b.model_name, b.model_cfg)
    assert _key(dataclasses.replace(cfg, model=str(other))) != k
    assert _key(tiny_config()) is None  # random weights by architecture name: never cached


def test_json_cache_entry_with_another_key_or_corrupt_is_a_miss(tmp_path):
    cache = before_cache(tmp_path)
    cache.put({"a": 1}, {"v": 2})
    assert cache.get({"a": 1}) == {"v": 2} and cache.get({"a": 2}) is None
    path = cache.path({"a": 1})
    path.write_text(json.dumps({"key": {"a": 3}, "value": 9}))  # as if two keys had collided
    assert cache.get({"a": 1}) is None
    path.write_text("{not json")
    assert cache.get({"a": 1}) is None
    assert before_cache(None).get({"a": 1}) is None and before_cache(None).put({"a": 1}, 1) is None


@pytest.mark.slow
def test_every_accuracy_has_its_n_and_standard_error_and_the_run_its_timing(saved_model, tmp_path):
    from cliperase.metrics import standard_error

    m = run_unlearning(tiny_config(model=str(saved_model), eval_max_samples=30), tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for block in (saved["before"], saved["after"]):
        assert block["n"]["retain_accuracy"] == 30 and block["n"]["forget_train_accuracy"] == 8  # capped / whole
        for k in ("forget_accuracy", "retain_accuracy", "test_accuracy", "retain_i2t_R@1"):
            assert block["se"][k] == pytest.approx(standard_error(block[k], block["n"][k]))
    assert standard_error(50.0, 100) == pytest.approx(5.0) and standard_error(100.0, 7) == 0.0
    t = saved["timing"]
    assert set(t) >= {"eval_before_s", "unlearn_s", "eval_after_s", "relearn_s", "total_s"}
    assert t["total_s"] >= t["eval_before_s"] + t["unlearn_s"] + t["eval_after_s"] + t["relearn_s"]
    assert m["settings"]["eval_max_samples"] == 30
    report = (tmp_path / "r" / "report.md").read_text()
    assert "4 steps, learning rate 0.0001" in report and "Unlearning wall time" in report and " ± " in report


@pytest.mark.slow
def test_each_evaluation_is_one_labelled_stage_and_inner_bars_are_silenced(saved_model, tmp_path, monkeypatch):
    import contextlib

    import cliperase.metrics as metrics
    import cliperase.relearn as relearn
    from cliperase.progress import stage

    labels = []

    @contextlib.contextmanager
    def record(label, total):
        labels.append((label, total, os.environ.get("MM_NO_PROGRESS")))
        with stage(label, total) as advance:
            labels.append(("inside", None, os.environ.get("MM_NO_PROGRESS")))
            yield advance

    monkeypatch.setattr(metrics, "stage", record)
    monkeypatch.setattr(relearn, "stage", record)
    monkeypatch.delenv("MM_NO_PROGRESS", raising=False)
    run_unlearning(tiny_config(model=str(saved_model)), tmp_path / "p")
    assert os.environ.get("MM_NO_PROGRESS") is None  # restored after every stage
    names = [lab for lab, _, _ in labels if lab != "inside"]
    assert names[0] == "eval before · held-out forget 4 + D_f 8 + D_r 72 + test 36 + gallery 20 images"
    assert names[1].startswith("eval after cliperase · held-out forget 4 + D_f 8")
    assert names[2].startswith("relearn · up to 4 steps") and len(names) == 3  # not one bar per encoding loop
    assert all(q == "1" for lab, _, q in labels if lab == "inside")  # the loops' own bars are off inside
