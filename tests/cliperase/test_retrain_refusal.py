"""Retrain refuses weights pretrained elsewhere (it cannot train them again without D_f) before any download."""

import json

import pytest
from cliperase.recipes import runner
from cliperase.recipes.runner import compare_methods, retrain_unavailable, run_unlearning
from cliperase_testutil import tiny_config
from mmcore.errors import MMError


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if any weights would be created, loaded or downloaded."""
    import mmcore.encoders.clip as clip

    def boom(*a, **k):
        raise AssertionError("a model was loaded before Retrain was refused")

    for name in ("create_clip", "load_clip"):
        monkeypatch.setattr(clip, name, boom)
    monkeypatch.setattr(runner, "_load_model", boom)


@pytest.mark.parametrize("model,pretrained", [("ViT-B-32", "openai"), ("mm-micro-clip", "fake-pretrained-tag"),
                                              ("mm-micro-clip", "/nowhere/weights.safetensors")])
def test_retrain_on_pretrained_weights_raises_before_loading(tmp_path, no_model_loading, model, pretrained):
    cfg = tiny_config(method="retrain", model=model, pretrained=pretrained)
    assert retrain_unavailable(cfg) is not None
    with pytest.raises(MMError, match="Retrain is unavailable") as e:
        run_unlearning(cfg, tmp_path / "out")
    msg = str(e.value)
    assert pretrained in msg and "without the forget set D_f" in msg and "does not have" in msg
    assert not (tmp_path / "out").exists()  # refused before the output directory was made
    with pytest.raises(MMError, match="Retrain is unavailable"):  # asked for explicitly in a comparison
        compare_methods(["ft", "retrain"], cfg, tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


def test_retrain_decision_follows_the_recorded_configs(tmp_path):
    assert retrain_unavailable(tiny_config(method="retrain")) is None  # random-init model name: trained here
    pre = tmp_path / "pre"  # `mm clip pretrain` from random weights: its recipe can be re-run
    pre.mkdir()
    (pre / "config.json").write_text(json.dumps({"model": "mm-micro-clip", "pretrained": None, "dataset": "shapes"}))
    assert retrain_unavailable(tiny_config(model=str(pre))) is None
    ft = tmp_path / "ft"  # `mm clip pretrain` that fine-tuned open_clip weights
    ft.mkdir()
    (ft / "config.json").write_text(json.dumps({"model": "ViT-B-32", "pretrained": "openai", "dataset": "shapes"}))
    assert "openai" in retrain_unavailable(tiny_config(model=str(ft)))
    # an unlearning run of a pretrained model, and one of a model trained here
    for start, pretrained, expect in ((str(pre), None, None), ("ViT-B-32", "laion2b_s34b_b79k", "laion2b")):
        un = tmp_path / f"un-{expect}"
        un.mkdir()
        (un / "config.json").write_text(json.dumps({"method": "cliperase", "model": start, "pretrained": pretrained}))
        got = retrain_unavailable(tiny_config(model=str(un)))
        assert got is None if expect is None else expect in got
        # the recipe Retrain re-runs: that of the model the unlearning started from, none for an open_clip name
        assert runner.pretrain_config(str(un)) == (json.loads((pre / "config.json").read_text()) if expect is None else None)
    unlearned_ft = tmp_path / "un-ft"  # two levels: unlearned from a fine-tune of pretrained weights
    unlearned_ft.mkdir()
    (unlearned_ft / "config.json").write_text(json.dumps({"method": "ft", "model": str(ft), "pretrained": None}))
    assert "openai" in retrain_unavailable(tiny_config(model=str(unlearned_ft)))


def test_compare_leaves_out_an_unavailable_retrain_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "retrain_unavailable", lambda cfg: "model 'x' with pretrained weights 'y'")
    cfg = tiny_config(steps=2, relearn=tiny_config().relearn.__class__(enabled=False))
    comp = compare_methods(["ft"], cfg, tmp_path / "c")
    assert [r["method"] for r in comp["rows"]] == ["ft"] and comp["retrain_seconds"] is None
    assert comp["rows"][0]["time_ratio_to_retrain"] is None
    assert "Retrain is unavailable" in comp["retrain_unavailable"]
    assert "No Retrain row" in (tmp_path / "c" / "comparison.md").read_text()
