"""CLIPErase and the baselines on BLIP (issue #29), through the family interface: a micro BLIP pretrained by the
project's recipe for a few steps, unlearned by `run_unlearning` exactly as a CLIP is; the result saved in
transformers' format and loadable by ``BlipForImageTextRetrieval.from_pretrained``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

MICRO = dict(model="mm-micro-blip", n_train=96, n_test=30, steps=3, batch_size=32, warmup=1, eval_every=0,
             checkpoint_every=0, log_every=1, retrieval_n=12, rerank_k=3)


@pytest.fixture(scope="module")
def blip_run(tmp_path_factory):
    from mmcore.blip_train import BlipTrainConfig
    from mmcore.recipes.blip_pretrain import pretrain

    out = tmp_path_factory.mktemp("blip") / "run"
    pretrain(BlipTrainConfig(**MICRO), out)
    return out


def _cfg(model, **kw):
    from cliperase.config import ForgetSpec, RelearnConfig, UnlearnConfig

    base = UnlearnConfig(model=str(model), forget=ForgetSpec(classes=["circle"]), steps=4, lr=1e-3, batch_size=8,
                         forget_batch_size=8, retrieval_max_pairs=16, mia_max_samples=32, eval_max_samples=60,
                         checkpoint_every=0, relearn=RelearnConfig(enabled=False))
    return dataclasses.replace(base, **kw)


def _forget_cosine(bundle, split) -> float:
    """Mean cosine of the forget pairs (image, its caption) under ``bundle``."""
    recs = split.forget.records[:16]
    images = torch.stack([bundle.preprocess_eval(r.load_image()) for r in recs])
    tokens = bundle.tokenizer([r.captions[0] for r in recs])
    with torch.no_grad():
        return float((bundle.encode_image(images) * bundle.encode_text(tokens)).sum(-1).mean())


@pytest.mark.slow
def test_cliperase_forgetting_term_on_blip_moves_only_the_text_tower_and_saves_in_transformers_format(blip_run,
                                                                                                       tmp_path):
    from cliperase.recipes.runner import load_split, run_unlearning
    from mmcore.encoders.family import load_image_text_model
    from transformers import BlipForImageTextRetrieval

    cfg = _cfg(blip_run, modules="fm", forget_text="caption")
    before = load_image_text_model(blip_run)
    split, _ = load_split(cfg, before.image_size, None)
    out = tmp_path / "u"
    m = run_unlearning(cfg, out)
    assert m["method"] == "cliperase" and m["random_init"] is False and m["steps"] == 4
    after = load_image_text_model(out)  # OUT/model/, found from the run directory
    assert after.family == "blip"
    assert _forget_cosine(after, split) < _forget_cosine(before, split) - 1e-3  # FM pushes D_f's pairs apart
    old, new = before.hf.state_dict(), after.hf.state_dict()
    vision = [k for k in old if k.startswith(("vision_model.", "vision_proj."))]
    assert vision and all(torch.equal(old[k], new[k]) for k in vision)  # towers "text" (CLIPErase's default)
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("text_encoder."))
    hf = BlipForImageTextRetrieval.from_pretrained(out / "model")
    assert all(torch.equal(v, new[k]) for k, v in hf.state_dict().items())  # round trip equal
    assert json.loads((out / "config.json").read_text())["method"] == "cliperase"  # the run's, beside model/


@pytest.mark.slow
def test_baselines_run_on_blip_and_the_clip_only_ones_say_why_not(blip_run, tmp_path):
    from cliperase.recipes.runner import compare_methods, run_unlearning
    from mmcore.errors import MMError

    comp = compare_methods(["ga", "multidelete"], _cfg(blip_run, steps=2), tmp_path / "c")
    assert [r["method"] for r in comp["rows"]] == ["ga", "multidelete"]  # no Retrain row, and the reason said
    assert "BLIP" in comp["retrain_unavailable"] and "mm clip pretrain --family blip" in comp["retrain_unavailable"]
    with pytest.raises(MMError, match="slug.*BLIP"):
        run_unlearning(_cfg(blip_run, method="slug"), tmp_path / "s")
    with pytest.raises(MMError, match="Retrain is unavailable for the BLIP model"):
        run_unlearning(_cfg(blip_run, method="retrain"), tmp_path / "r")
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()  # refused before any output


def test_mm_unlearn_run_takes_a_blip_run_directory(blip_run, tmp_path):
    from mm_cli.unlearn_cmds import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["run", "--model", str(blip_run), "--forget-classes", "circle", "--steps", "2",
                                   "--set", "batch_size=8", "--set", "forget_batch_size=4", "--no-relearn",
                                   "--set", "retrieval_max_pairs=16", "--set", "mia_max_samples=32",
                                   "--out", str(tmp_path / "o")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "model" / "model.safetensors").is_file() and "unlearned model" in res.output
    res = CliRunner().invoke(app, ["run", "--model", str(blip_run), "--random-init", "--forget-classes", "circle",
                                   "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "saved model directory" in res.output
