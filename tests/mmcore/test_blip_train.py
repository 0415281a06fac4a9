"""BLIP pretraining (ITC + ITM with hard negatives) at micro size: the run directory, its transformers folder, the
logged losses, and the ITM positives (a text is a positive of every image it is a caption of)."""

from __future__ import annotations

import json

import pytest
import torch
from mmcore.blip_train import BlipObjective, BlipTrainConfig
from mmcore.data.records import ImageTextRecord

MICRO = dict(model="mm-micro-blip", n_train=96, n_test=30, steps=3, batch_size=32, warmup=1, eval_every=2,
             checkpoint_every=0, log_every=1, retrieval_n=12, rerank_k=3)


def test_positives_are_the_captions_of_each_record():
    recs = [ImageTextRecord("a", ["a red circle", "a circle"]), ImageTextRecord("b", ["a blue circle", "a circle"])]
    obj = BlipObjective(recs, BlipTrainConfig())
    pos = obj.positives([0, 1], ["a circle", "a blue circle"])
    assert pos.tolist() == [[True, False], [True, True]]


def test_micro_pretraining_writes_a_loadable_blip_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    from mmcore.encoders.family import detect_family, load_image_text_model
    from mmcore.recipes.blip_pretrain import pretrain

    out = tmp_path / "run"
    metrics = pretrain(BlipTrainConfig(**MICRO), out)
    assert 0.0 <= metrics["zero_shot_accuracy"] <= 1.0 and metrics["family"] == "blip" and metrics["steps"] == 3
    assert metrics["retrieval_rerank_k"] == 3 and metrics["retrieval_n_images"] == 12
    assert json.loads((out / "config.json").read_text())["itm_weight"] == 1.0  # the run's config, not the model's
    assert (out / "model" / "model.safetensors").is_file() and not (out / "checkpoint").exists()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 3 and all(r["loss"] == pytest.approx(r["itc_loss"] + r["itm_loss"], rel=1e-5) for r in steps)
    assert [r["step"] for r in log if r.get("event") == "eval"] == [0, 2, 3]
    assert detect_family(out) == "blip"
    bundle = load_image_text_model(out)
    assert bundle.family == "blip" and bundle.logit_scale == pytest.approx(float(torch.tensor(steps[-1]["logit_scale"])),
                                                                           rel=1e-2)
