"""The 100-class shapes world (shape x colour) with forget ratios, and concept (keyword) forgetting: what
--forget-keyword selects on shapes captions and the concept metrics of evaluate_split."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cliperase.config import ForgetSpec, RelearnConfig
from cliperase.forget_sets import split_forget_retain
from cliperase_testutil import EASY_KW, easy_config, tiny_config
from mmcore.data.shapes import make_shapes


@pytest.mark.parametrize("ratio,k", [(0.03, 3), (0.1, 10), (0.2, 20), (0.3, 30)])
def test_forget_ratio_on_the_100_class_world_is_seeded_and_reported(ratio, k):
    train = make_shapes(600, seed=0, image_size=16, classes="shape_color")
    test = make_shapes(300, seed=1, image_size=16, classes="shape_color")
    a = split_forget_retain(train, test, ForgetSpec(ratio=ratio, seed=3))
    assert len(a.forget_classes) == k and len(set(a.forget_classes)) == k
    assert a.forget_classes == split_forget_retain(train, test, ForgetSpec(ratio=ratio, seed=3)).forget_classes
    assert a.forget_classes != split_forget_retain(train, test, ForgetSpec(ratio=ratio, seed=4)).forget_classes
    assert a.description == "classes " + ", ".join(a.forget_classes)
    names = {train.classnames.index(c) for c in a.forget_classes}
    assert {r.label for r in a.forget.records} == names and not names & {r.label for r in a.retain.records}
    assert {r.label for r in a.test_forget.records} <= names


def test_forget_keyword_on_shapes_cuts_across_the_classes():
    train, test = make_shapes(300, seed=0, image_size=16), make_shapes(100, seed=1, image_size=16)
    sp = split_forget_retain(train, test, ForgetSpec(keyword="red"))
    assert sp.forget_classes is None and sp.description == "keyword 'red'"
    assert all(r.attrs["color"] == "red" for r in sp.forget.records + sp.test_forget.records)
    assert all(r.attrs["color"] != "red" for r in sp.retain.records + sp.test_retain.records)
    assert len({r.label for r in sp.forget.records}) >= 5  # many shape classes lose their red images
    left = split_forget_retain(train, test, ForgetSpec(keyword="left"))
    assert all(r.attrs["position"] == "left" for r in left.forget.records)


def test_concept_metrics_take_different_values_for_two_models(easy_world):
    from cliperase.concepts import concept_attribute
    from cliperase.metrics import evaluate_split
    from mmcore.encoders.clip import load_clip

    model_dir, _ = easy_world
    train, test = make_shapes(200, seed=0, **EASY_KW), make_shapes(200, seed=1, **EASY_KW)
    split = split_forget_retain(train, test, ForgetSpec(keyword="red"))
    attr, values, words = concept_attribute(test.records, "Red")
    assert attr == "color" and set(values) == {"red", "green", "blue"} and words == ["red"]
    assert concept_attribute(test.records, "red,blue")[2] == ["red", "blue"]
    assert concept_attribute(test.records, "blob") is None
    assert concept_attribute(test.records, "circle") is None  # the shape is the class, not a concept attribute
    cfg = easy_config(model_dir, forget=ForgetSpec(keyword="red"))
    trained = load_clip(model_dir)
    random_init = load_clip(model_dir.parent / "init")
    out = {name: evaluate_split(b.model, b, split, cfg) for name, b in (("trained", trained), ("init", random_init))}
    keys = ("concept_accuracy", "concept_other_accuracy", "concept_caption_t2i_R@1", "other_caption_t2i_R@1")
    for k in keys:
        assert out["trained"][k] is not None and 0 <= out["trained"][k] <= 100, k
        assert out["trained"][k] != out["init"][k], k
        assert out["trained"]["se"][k] is not None and out["trained"]["n"][k] > 0, k
    c = out["trained"]["concept"]
    assert c["attribute"] == "color" and set(c["values"]) == {"red", "green", "blue"}
    assert c["concept_n"] == len(split.test_forget) and c["other_n"] == len(split.test_retain)
    caps = out["trained"]["retrieval"]["captions"]
    assert caps["concept"]["n_texts"] > 0 and caps["other"]["n_texts"] > 0
    # a class forget set has none of them
    cls = evaluate_split(trained.model, trained, split_forget_retain(train, test, ForgetSpec(classes=["circle"])),
                         easy_config(model_dir))
    assert "concept_accuracy" not in cls and "captions" not in cls["retrieval"]


def test_color_detector_reads_the_diffusion_rendering():
    from cliperase.diffusion.data import OTHER_CLASS, render_clean
    from cliperase.diffusion.detector import ColorDetector

    det = ColorDetector(["red", "green", "blue", "yellow"])
    imgs = np.stack([render_clean("circle", "red", 16, 0.35), render_clean("square", "blue", 16, 0.35),
                     render_clean("cross", "yellow", 16, 0.35), np.full((16, 16, 3), 128, np.uint8)])
    pred = det.predict(imgs).argmax(1)
    assert [det.classnames[i] for i in pred] == ["red", "blue", "yellow", OTHER_CLASS]
    assert np.allclose(det.predict(imgs.astype(np.float32) / 255).sum(1), 1.0)


def test_pretrain_and_unlearn_on_the_100_class_world(tmp_path):
    from cliperase.recipes.runner import run_unlearning
    from mmcore.clip_train import ClipTrainConfig
    from mmcore.distributed import AcceleratorConfig
    from mmcore.io import read_json
    from mmcore.recipes.clip_pretrain import pretrain

    pre = ClipTrainConfig(model="mm-micro-clip", shapes_classes="shape_color", n_train=300, n_test=200, steps=3,
                          batch_size=16, warmup=1, eval_every=0, checkpoint_every=0,
                          accelerator=AcceleratorConfig(log_with="none"))
    pm = pretrain(pre, tmp_path / "clip")
    assert len(pm["per_class"]) == 100 and read_json(tmp_path / "clip" / "config.json")["shapes_classes"] == "shape_color"
    # shapes_classes None: the pretraining run's world; n_train / n_test likewise
    cfg = tiny_config(model=str(tmp_path / "clip"), n_train=0, n_test=0, forget=ForgetSpec(ratio=0.03, seed=1),
                      relearn=RelearnConfig(enabled=False))
    m = run_unlearning(cfg, tmp_path / "ratio")
    assert len(m["forget_classes"]) == 3 and all(" " in c for c in m["forget_classes"])
    assert m["sizes"]["forget"] + m["sizes"]["retain"] == 300
    kw = run_unlearning(dataclasses.replace(cfg, forget=ForgetSpec(keyword="red")), tmp_path / "keyword")
    for part in ("before", "after"):
        assert kw[part]["concept"]["attribute"] == "color" and kw[part]["concept_accuracy"] is not None
        assert kw[part]["concept_caption_t2i_R@1"] is not None
