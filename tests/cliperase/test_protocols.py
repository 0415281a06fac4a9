"""Evaluation protocols: held-out forget accuracy on templates unlearning never saw, Recall@K of forget and
retain queries against the whole held-out gallery, and a relearn protocol that can restore the association.
Each metric is shown to take different values for the original and an unlearned model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cliperase.config import ForgetSpec, RelearnConfig
from cliperase.forget_sets import split_forget_retain
from cliperase.metrics import evaluate_split, forget_score, gallery_retrieval, probe_set
from cliperase.relearn import relearn_steps
from cliperase.templates import Templates, normalize_prompt, run_templates
from cliperase_testutil import easy_config, tiny_config
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.data.shapes import make_shapes
from mmcore.errors import ConfigError
from torch import nn

# --------------------------------------------------------------------------- templates


def test_default_templates_split_the_dataset_templates_in_two_disjoint_sets():
    shapes = make_shapes(20, seed=0, image_size=16)
    t = run_templates(shapes)
    assert t.evaluation == ("a photo of a {}",) and t.unlearning == ("a {}",)
    assert "a photo of a circle" in t.banned and "a circle" not in t.banned
    assert not t.allowed("A photo of a circle.") and t.allowed("a circle") and t.allowed("a photo of a red circle")
    cifar = ImageTextData("c", [], classnames=["cat", "dog"], templates=[f"t{i} {{}}." for i in range(18)])
    t = run_templates(cifar)
    assert len(t.evaluation) == len(t.unlearning) == 9 and not set(t.evaluation) & set(t.unlearning)
    t = run_templates(shapes, eval_templates=["a {}"])
    assert t.evaluation == ("a {}",) and t.unlearning == ("a photo of a {}",)
    with pytest.raises(ConfigError, match="disjoint"):
        run_templates(shapes, eval_templates=["a {}"], unlearn_templates=["a {}."])
    with pytest.raises(ConfigError, match="disjoint"):
        tiny_config(eval_templates=["a {}"], unlearn_templates=["a {}"]).validate()
    with pytest.raises(ConfigError, match="placeholder"):
        tiny_config(eval_templates=["a photo"]).validate()


def test_pair_texts_never_use_an_evaluation_prompt_and_fall_back_to_unlearning_prompts():
    from cliperase.training import pair_text

    data = make_shapes(30, seed=0, image_size=16)
    t = run_templates(data)
    for mode in ("caption", "prompt", "mixed"):
        texts = [pair_text(r, data, mode, (0, s, 102, i), t) for s in range(20) for i, r in enumerate(data.records)]
        assert all(t.allowed(x) for x in texts), mode
        if mode != "caption":  # class prompts come from the unlearning template
            assert {f"a {data.classnames[r.label]}" for r in data.records} & set(texts)
    # without the template split (the old behaviour) the mixed forget text drew the evaluation prompts
    old = {pair_text(r, data, "mixed", (0, s, 102, i)) for s in range(20) for i, r in enumerate(data.records)}
    assert any(not t.allowed(x) for x in old)
    # a record whose only caption is an evaluation prompt (CIFAR-100's "a photo of a {class}") gets a class prompt
    cifar = ImageTextData("c", [ImageTextRecord("0", ["a photo of a cat"], label=0)], classnames=["cat"],
                          templates=["a photo of a {}.", "a blurry photo of a {}."])
    tc = run_templates(cifar)
    assert pair_text(cifar.records[0], cifar, "caption", (0, 0, 0, 0), tc) == "a blurry photo of a cat."


def test_unlearning_batches_hold_no_evaluation_prompt(monkeypatch, easy_world):
    import cliperase.trainer as tr
    from mmcore.distributed import AcceleratorConfig, build_accelerator
    from mmcore.encoders.clip import load_clip

    model_dir, split = easy_world
    seen: list[str] = []
    real = tr.pair_text

    def spy(*a, **k):
        seen.append(real(*a, **k))
        return seen[-1]

    monkeypatch.setattr(tr, "pair_text", spy)
    cfg = easy_config(model_dir, steps=3)
    from cliperase.methods import unlearn

    unlearn(load_clip(model_dir), split, cfg, build_accelerator(AcceleratorConfig(log_with="none")))
    t = run_templates(split.retain)
    assert seen and all(t.allowed(x) for x in seen)
    assert "a circle" in seen  # the mixed forget text: class prompts from the unlearning template


# --------------------------------------------------------------------------- original vs unlearned


@pytest.fixture(scope="module")
def easy_models(easy_world):
    """(bundle of the original, unlearned model, split, cfg): CLIPErase, 30 steps at lr 1e-3, on the easy world."""
    from cliperase.methods import unlearn
    from mmcore.distributed import AcceleratorConfig, build_accelerator
    from mmcore.encoders.clip import load_clip

    model_dir, split = easy_world
    cfg = easy_config(model_dir, steps=30, lr=1e-3)
    res = unlearn(load_clip(model_dir), split, cfg, build_accelerator(AcceleratorConfig(log_with="none")))
    return load_clip(model_dir), res.model, split, cfg


def test_forget_accuracy_is_held_out_and_tells_the_models_apart(easy_models):
    bundle, unlearned, split, cfg = easy_models
    before = evaluate_split(bundle.model, bundle, split, cfg)
    after = evaluate_split(unlearned, bundle, split, cfg)
    assert before["zero_shot_n"]["forget"] == len(split.test_forget) == 50  # held-out forget images
    assert before["zero_shot_n"]["forget_train"] == len(split.forget) == 50  # D_f
    assert before["zero_shot_templates"] == ["a photo of a {}"]
    assert before["forget_accuracy"] >= 90 and after["forget_accuracy"] <= 10
    assert before["forget_train_accuracy"] >= 90 and after["forget_train_accuracy"] <= 10
    assert after["retain_accuracy"] >= 90 and after["test_accuracy"] >= 85
    # the whole-gallery recalls move too: forget queries lose to other classes, retain ones do not
    assert before["forget_i2t_R@1"] >= 80 and after["forget_i2t_R@1"] <= 20
    assert before["forget_i2t_R@5"] > after["forget_i2t_R@5"]
    assert after["retain_i2t_R@1"] >= before["retain_i2t_R@1"] - 10
    g = after["retrieval"]["gallery"]
    assert g["n_forget_images"] == 50 and g["n_retain_images"] == 150 and g["forget_part"] == "held-out"
    assert after["retrieval"]["forget"]["n_images"] == 50 and after["retrieval"]["retain"]["n_images"] == 150


def test_relearn_tells_an_unlearned_model_from_the_original(easy_models, monkeypatch):
    import cliperase.relearn as relearn

    bundle, unlearned, split, cfg = easy_models
    probe, where = probe_set(split, cfg)
    assert where == "held-out" and len(probe) == 50
    original_score = forget_score(bundle.model, bundle, probe, split, cfg)
    assert original_score >= 90
    orig = relearn_steps(bundle.model, bundle, split, cfg, original_score)
    assert orig["steps"] == 0 and orig["curve"] == [{"step": 0, "score": original_score}]

    trained: list[int] = []
    real_adam = relearn.adam
    monkeypatch.setattr(relearn, "adam", lambda params, lr: trained.append(sum(p.numel() for p in params))
                        or real_adam(params, lr))
    texts: list[str] = []
    real_pair = relearn.pair_text
    monkeypatch.setattr(relearn, "pair_text", lambda *a, **k: texts.append(real_pair(*a, **k)) or texts[-1])
    unlearned.visual.requires_grad_(False)  # as a text-tower unlearning leaves it: relearning trains it anyway
    res = relearn_steps(unlearned, bundle, split, cfg, original_score)
    assert res["curve"][0]["score"] < original_score / 2
    assert res["steps"] is not None and 0 < res["steps"] <= cfg.relearn.max_steps and not res["cap_hit"]
    assert res["final_score"] >= res["target_score"] == original_score / 2
    assert [p["step"] for p in res["curve"]] == list(range(0, res["steps"] + 1, cfg.relearn.eval_every))
    # the protocol: both towers trained (logit scale aside), D_f and D_r in every batch, class prompts of
    # several classes (unlearning template only)
    assert trained == [sum(p.numel() for p in unlearned.parameters()) - unlearned.logit_scale.numel()]
    assert res["batch"] == {"forget": 16, "retain": 16, "text": "prompt"}
    per_step = [texts[i:i + 32] for i in range(0, len(texts), 32)]
    assert all("a circle" in b and len(set(b)) >= 3 for b in per_step)
    assert set(texts) <= {f"a {c}" for c in split.retain.classnames}


def test_relearn_cap_is_reported_when_the_target_is_not_reached(easy_models):
    bundle, unlearned, split, cfg = easy_models
    cfg = dataclasses.replace(cfg, relearn=dataclasses.replace(cfg.relearn, max_steps=2, eval_every=2, lr=1e-6))
    res = relearn_steps(unlearned, bundle, split, cfg, 100.0)
    assert res["steps"] is None and res["cap_hit"] and res["curve"][-1]["step"] == 2


def test_relearn_batches_need_both_sets():
    with pytest.raises(ConfigError, match="forget_fraction"):
        tiny_config(relearn=RelearnConfig(forget_fraction=1.0)).validate()


# --------------------------------------------------------------------------- gallery retrieval, exact


class OneHotClip(nn.Module):
    """Images and texts as one-hot class vectors: an image's class is its pixel value, a text's class the
    last word's index in ``classes``; ``moved`` maps some image classes onto another class (a "forgetting")."""

    def __init__(self, classes: list[str], moved: dict[int, int] | None = None):
        super().__init__()
        self.classes, self.moved = classes, moved or {}
        self.w = nn.Parameter(torch.zeros(1))

    def encode_image(self, x, normalize=False):
        c = x[:, 0, 0, 0].round().long()
        c = torch.tensor([self.moved.get(int(i), int(i)) for i in c])
        return nn.functional.one_hot(c, len(self.classes)).float() + 0 * self.w

    def encode_text(self, tokens, normalize=False):
        return nn.functional.one_hot(tokens[:, 0], len(self.classes)).float()


def _class_caption_world(n_per_class: int = 4):
    classes = ["cat", "dog", "fox"]
    recs = [ImageTextRecord(f"{c}{i}", [f"a photo of a {name}"], label=c, image=np.full((2, 2, 3), c, np.uint8))
            for c, name in enumerate(classes) for i in range(n_per_class)]
    data = ImageTextData("cc", recs, classnames=classes, templates=["a photo of a {}"])
    split = split_forget_retain(data, data, ForgetSpec(classes=["cat"]))

    class Bundle:
        tokenizer = staticmethod(lambda texts: torch.tensor([[classes.index(t.split()[-1])] for t in texts]))
        preprocess_eval = staticmethod(lambda img: torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1))

    return classes, split, Bundle()


def test_gallery_recall_is_100_for_a_perfect_model_on_class_captions_and_0_for_forgotten_queries():
    classes, split, bundle = _class_caption_world()
    cfg = tiny_config(retrieval_max_pairs=100)
    perfect = gallery_retrieval(OneHotClip(classes), bundle, split.test_forget, split.test_retain, cfg, 0)
    assert perfect["gallery"]["n_images"] == 12 and perfect["gallery"]["n_texts"] == 3  # one text per class
    for part in ("forget", "retain"):
        assert all(perfect[part][f"{d}_R@{k}"] == 100.0 for d in ("i2t", "t2i") for k in (1, 5, 10)), part
    assert (perfect["forget"]["n_images"], perfect["forget"]["n_texts"]) == (4, 1)
    assert (perfect["retain"]["n_images"], perfect["retain"]["n_texts"]) == (8, 2)
    # cat images now look like dogs: every cat query loses to the dog text / the dog images win the cat text
    # (its score ties at 0 with every image, and ties count against the query); the dog text now ties with
    # the cat images, so one retain text of two misses
    forgot = gallery_retrieval(OneHotClip(classes, {0: 1}), bundle, split.test_forget, split.test_retain, cfg, 0)
    assert forgot["forget"]["i2t_R@1"] == 0.0 and forgot["forget"]["t2i_R@1"] == 0.0
    assert forgot["retain"]["i2t_R@1"] == 100.0 and forgot["retain"]["t2i_R@1"] == 50.0
    # inside D_f alone (the old protocol) the forgetting model would still score 100: one text, all its own
    inside = gallery_retrieval(OneHotClip(classes, {0: 1}), bundle, split.test_forget, split.test_forget.subset([]),
                               cfg, 0)
    assert inside["forget"]["i2t_R@1"] == 100.0


def test_recall_hits_restrict_to_query_subsets():
    from mmcore.eval.retrieval import recall_at_k_blocked

    torch.manual_seed(0)
    img, txt = torch.randn(7, 4), torch.randn(5, 4)
    owners = [[0, 1], [2], [3], [4, 5], [6]]
    recalls, hits = recall_at_k_blocked(img, txt, owners, (1, 3), block_size=2, return_hits=True)
    assert recalls == recall_at_k_blocked(img, txt, owners, (1, 3))
    for key in ("i2t_R@1", "i2t_R@3"):
        assert 100.0 * hits[key].float().mean().item() == pytest.approx(recalls[key])
    for key in ("t2i_R@1", "t2i_R@3"):
        assert 100.0 * hits[key].float().mean().item() == pytest.approx(recalls[key])
    assert hits["has_text"].all() and bool((hits["i2t_R@1"] <= hits["i2t_R@3"]).all())


def test_templates_object_is_hashable_and_recorded():
    t = Templates(("a photo of a {}",), ("a {}",), frozenset({normalize_prompt("a photo of a cat.")}))
    assert t.to_dict()["evaluation"] == ["a photo of a {}"] and not t.allowed("A photo of a cat")


def test_compare_reports_retrain_relearn_as_the_never_learned_reference(tmp_path):
    import json

    from cliperase.recipes.runner import compare_methods

    comp = compare_methods(["cliperase"], tiny_config(), tmp_path / "c")
    retrain = json.loads((tmp_path / "c" / "retrain" / "metrics.json").read_text())["relearn"]
    assert comp["relearn_reference"] == {"method": "retrain", "steps": retrain["steps"], "cap_hit": retrain["cap_hit"],
                                         "max_steps": 4, "target_score": retrain["target_score"]}
    assert comp["original"]["relearn_steps"] == 0 and comp["relearn_plot"] == "relearn.png"
    assert (tmp_path / "c" / "relearn.png").stat().st_size > 0 and (tmp_path / "c" / "cliperase" / "relearn.png").is_file()
    assert "Relearn reference (Retrain, never learned D_f)" in (tmp_path / "c" / "comparison.md").read_text()
    assert {"forget_train_accuracy", "forget_t2i_R@5"} <= set(comp["rows"][0])
