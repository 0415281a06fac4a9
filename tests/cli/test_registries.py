"""Extending `mm` without editing it (issue #31): a toy unlearning method, a toy image-text dataset and a toy
AVQA model are registered from this test module alone — no other file of the repository changes — and each runs
through the `mm` CLI end to end (CliRunner on the real app, so the registrations are seen)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cliperase.methods import UnlearningMethod, register_method, unregister_method
from mm_cli.main import app
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.data.registry import (
    ImageTextDatasetSpec,
    register_image_text_dataset,
    unregister_image_text_dataset,
)
from sasrnet.registry import AVQAModelSpec, register_avqa_model, unregister_avqa_model
from typer.testing import CliRunner

TINY = ["--model", "mm-micro-clip", "--random-init", "--set", "n_train=80", "--set", "n_test=40",
        "--set", "batch_size=8", "--set", "forget_batch_size=4", "--set", "retrieval_max_pairs=16",
        "--set", "mia_max_samples=32", "--set", "checkpoint_every=0", "--set", "retrain.fallback_steps=2",
        "--set", "retrain.batch_size=8", "--steps", "3", "--no-relearn"]


class ForgetCosine(UnlearningMethod):
    """Toy: push the forget pairs' image-text cosine down, nothing else."""

    name, uses = "toy-forget-cosine", ("forget",)
    help = "toy method of tests/cli/test_registries.py"

    def loss(self, cfg, s):
        import torch.nn.functional as F

        return self.total(toy_cos=(F.normalize(s.f.img, dim=-1) * F.normalize(s.f.txt, dim=-1)).sum(-1).mean())


BARS = ["horizontal bars", "vertical bars"]


def load_bars(root, split, *, n=40, seed=0, image_size=64, **_):
    """Toy dataset: grey images with horizontal or vertical stripes (label 0 / 1)."""
    rng = np.random.default_rng(seed * 3 + {"train": 0, "test": 2}[split])
    recs = []
    for i in range(n):
        label = i % 2
        img = np.full((image_size, image_size, 3), 40, np.uint8)
        lines = slice(int(rng.integers(0, 4)), None, 8)
        if label == 0:
            img[lines, :, :] = 220
        else:
            img[:, lines, :] = 220
        recs.append(ImageTextRecord(id=f"{split}-{i}", captions=[f"a picture of {BARS[label]}"], label=label, image=img))
    return ImageTextData("toy-bars", recs, classnames=list(BARS), templates=["a picture of {}.", "an image of {}."])


@pytest.fixture
def toys():
    register_method(ForgetCosine)
    register_image_text_dataset(ImageTextDatasetSpec("toy-bars", load_bars, "toy dataset of this test",
                                                     needs_root=False, test_split="test", in_memory=True))
    yield
    unregister_method(ForgetCosine.name)
    unregister_image_text_dataset("toy-bars")


def invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.slow
def test_a_toy_method_runs_and_compares_through_mm_unlearn(tmp_path, toys):
    assert "toy-forget-cosine" in invoke("unlearn", "methods").output
    out = tmp_path / "run"
    invoke("unlearn", "run", "--method", "toy-forget-cosine", "--forget-classes", "circle", *TINY, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "toy-forget-cosine" and m["steps"] == 3
    assert set(m["final_losses"]) == {"loss", "toy_cos"}
    assert m["after"]["forget_accuracy"] is not None

    comp_dir = tmp_path / "compare"
    invoke("unlearn", "compare", "--methods", "ga,toy-forget-cosine", "--forget-classes", "circle", *TINY,
           "--out", comp_dir)
    comp = json.loads((comp_dir / "comparison.json").read_text())
    rows = {r["method"]: r for r in comp["rows"]}
    assert set(rows) == {"ga", "toy-forget-cosine", "retrain"}  # the reference is added from the registry
    assert rows["toy-forget-cosine"]["time_ratio_to_retrain"] is not None


@pytest.mark.slow
def test_a_toy_dataset_runs_through_mm_clip_eval_and_mm_unlearn(tmp_path, toys):
    invoke("clip", "eval", "--dataset", "toy-bars", "--model", "mm-micro-clip", "--random-init", "--out", tmp_path / "e")
    ev = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert ev["dataset"] == "toy-bars" and ev["n"] == 40 and set(ev["per_class"]) == set(BARS)
    assert 0.0 <= ev["zero_shot_accuracy"] <= 1.0
    out = tmp_path / "u"
    invoke("unlearn", "run", "--dataset", "toy-bars", "--forget-classes", "vertical bars", "--method", "ga",
           *TINY, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "toy-bars" and m["sizes"]["forget"] == 20 and m["sizes"]["test"] == 40


def test_unknown_names_still_fail_with_the_choices(toys):
    res = CliRunner().invoke(app, ["unlearn", "run", "--method", "nope", "--forget-classes", "circle", *TINY,
                                   "--out", "/tmp/never-written"])
    assert res.exit_code == 2 and "toy-forget-cosine" in res.output


class BagOfWords:
    """Toy AVQA model: mean question-word embedding plus the video's mean audio feature, one linear answer head
    (the ModelConfig's vocabulary, answer count and audio width, filled in by the training recipe)."""

    def __new__(cls, cfg):
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.cfg = cfg
                self.words = nn.Embedding(cfg.word_vocab, 16)
                self.audio = nn.Linear(cfg.audio_dim, 16)
                self.answer = nn.Linear(16, cfg.n_answers)

            def forward(self, batch):
                q = self.words(batch["question"]).mean(1)
                rows = batch.get("video_index")
                a = self.audio(batch["audio"].mean(1))
                a = a if rows is None else a[rows]
                return {"logits": self.answer(torch.tanh(q + a))}

        return Net()


@pytest.fixture
def toy_avqa():
    register_avqa_model(AVQAModelSpec("toy-bow", BagOfWords, "toy model of tests/cli/test_registries.py"))
    yield
    unregister_avqa_model("toy-bow")


@pytest.mark.slow
def test_a_toy_avqa_model_trains_and_evaluates_through_mm_avqa(tmp_path, toy_avqa):
    import torch
    from mmcore.avqa.feature_extraction import extract_features
    from mmcore.avqa.synth import synthesize

    torch.set_num_threads(1)
    world = tmp_path / "world"
    synthesize(world, 6, 0, progress=False)
    extract_features(world / "videos", world / "features", progress=False)
    assert "toy-bow" in invoke("avqa", "models").output
    run = tmp_path / "toy"
    invoke("avqa", "train", "--model", "toy-bow", "--data", world, "--out", run, "--size", "cpu-tiny",
           "--epochs", "2", "--set", "batch_size=4")
    m = json.loads((run / "metrics.json").read_text())
    assert m["model"] == "toy-bow" and 0.0 <= m["test"]["overall"] <= 100.0
    assert json.loads((run / "model.json").read_text())["kind"] == "toy-bow"
    invoke("avqa", "eval", "--checkpoint", run, "--data", world, "--out", tmp_path / "ev")
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["model"] == "toy-bow" and ev["overall"] == pytest.approx(m["test"]["overall"])
