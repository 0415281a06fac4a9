"""Diffusion evaluation of unlearned CLIP text encoders: swap, pipelines, detector, pretrain, eval.

Everything is tiny and random, built offline (mm-micro-clip: text width 32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcore.errors import ConfigError, MMError


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """Two micro CLIPs with different random weights: 'original' and a stand-in 'unlearned'."""
    from mmcore.encoders.clip import create_clip, save_clip

    root = tmp_path_factory.mktemp("clips")
    out = []
    for i, name in enumerate(("original", "unlearned")):
        torch.manual_seed(i)
        b = create_clip("mm-micro-clip")
        save_clip(b.model, root / name, b.model_name, b.model_cfg)
        out.append(root / name)
    return out[0], out[1]


@pytest.fixture(scope="module")
def shapes_pipeline_dir(clip_dirs, tmp_path_factory) -> Path:
    """A `mm diffusion pretrain --preset test` pipeline (a few steps: weights barely trained)."""
    from cliperase.recipes.diffusion_pretrain import PRESETS, DiffusionPretrainConfig, pretrain_diffusion
    from mmcore.config import resolve_config

    out = tmp_path_factory.mktemp("pipe") / "p"
    cfg = resolve_config(DiffusionPretrainConfig, None, {**PRESETS["test"], "clip": str(clip_dirs[0])})
    metrics = pretrain_diffusion(cfg, out)
    assert metrics["steps_done"] == cfg.steps
    return out


def _tiny_sd_pipeline(cross_dim: int, tokenizer, text_encoder):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=8, sample_size=16,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


@pytest.mark.slow
def test_swap_into_stable_diffusion_and_hidden_size_mismatch(clip_dirs, tmp_path):
    from cliperase.diffusion.pipeline import generate, load_pipeline, swap_text_encoder, text_tower_from_clip
    from transformers import CLIPTextConfig, CLIPTextModel

    te_orig, tok = text_tower_from_clip(clip_dirs[0])
    te_unl, tok_unl = text_tower_from_clip(clip_dirs[1])
    pipe = _tiny_sd_pipeline(te_orig.config.hidden_size, tok, te_orig)
    pipe.save_pretrained(tmp_path / "sd", safe_serialization=True)
    pipe = load_pipeline(tmp_path / "sd", text_components=False)
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.text_encoder is None
    swap_text_encoder(pipe, te_orig, tok)

    a = generate(pipe, "a red circle", 1, seed=3, num_inference_steps=2, guidance_scale=2.0, height=16, width=16)
    swap_text_encoder(pipe, te_unl, tok_unl)
    assert pipe.text_encoder is te_unl
    b = generate(pipe, "a red circle", 1, seed=3, num_inference_steps=2, guidance_scale=2.0, height=16, width=16)
    assert a.shape == b.shape == (1, 16, 16, 3)
    assert not np.allclose(a, b), "a different text encoder must change the generated image"

    wrong = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=16))
    with pytest.raises(MMError, match="cross_attention_dim 32"):
        swap_text_encoder(pipe, wrong, tok, source="wrong-clip")


def test_load_pipeline_errors(tmp_path):
    from cliperase.diffusion.pipeline import load_pipeline

    (tmp_path / "empty").mkdir()
    with pytest.raises(MMError, match="model_index.json"):
        load_pipeline(tmp_path / "empty")
    with pytest.raises(MMError, match="not found"):
        load_pipeline(tmp_path / "does-not-exist")


def test_shapes_pipeline_roundtrip_and_seeded_swap(shapes_pipeline_dir, clip_dirs):
    from cliperase.diffusion.pipeline import (
        ShapesDiffusionPipeline,
        generate,
        load_pipeline,
        swap_text_encoder,
        text_tower_from_clip,
    )

    pipe = load_pipeline(shapes_pipeline_dir)
    assert isinstance(pipe, ShapesDiffusionPipeline)
    assert pipe.config.patch_size == 2
    a1 = generate(pipe, "a circle", 2, seed=0, num_inference_steps=3, guidance_scale=2.0)
    a2 = generate(pipe, "a circle", 2, seed=0, num_inference_steps=3, guidance_scale=2.0)
    assert a1.shape == (2, 16, 16, 3) and 0 <= a1.min() and a1.max() <= 1
    np.testing.assert_array_equal(a1, a2)  # fixed seeds: original and unlearned see the same noise
    assert not np.allclose(a1[0], a1[1])  # but each image in a prompt's batch has its own seed
    te, tok = text_tower_from_clip(clip_dirs[1])
    swap_text_encoder(pipe, te, tok)
    b = generate(pipe, "a circle", 2, seed=0, num_inference_steps=3, guidance_scale=2.0)
    assert not np.allclose(a1, b)


def test_pretrain_writes_diffusers_layout(shapes_pipeline_dir):
    d = shapes_pipeline_dir
    index = json.loads((d / "model_index.json").read_text())
    assert index["_class_name"] == "ShapesDiffusionPipeline"
    assert (d / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (d / "text_encoder" / "model.safetensors").is_file()
    assert (d / "detector" / "model.safetensors").is_file()
    metrics = json.loads((d / "metrics.json").read_text())
    assert set(metrics["check_detection"]) == {"circle", "square", "triangle", "cross"}
    assert not (d / "checkpoint").exists()  # finished runs keep only the pipeline
    assert json.loads((d / "config.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_pretrain_resume_is_exact(clip_dirs, tmp_path):
    from cliperase.recipes.diffusion_pretrain import PRESETS, DiffusionPretrainConfig, pretrain_diffusion
    from mmcore.config import resolve_config
    from mmcore.io import load_safetensors

    base = {**PRESETS["test"], "clip": str(clip_dirs[0]), "steps": 3, "check_per_shape": 1}
    full = pretrain_diffusion(resolve_config(DiffusionPretrainConfig, None, base), tmp_path / "full")
    # Interrupt after the first step (time budget ~0), then resume to the end.
    cut = pretrain_diffusion(resolve_config(DiffusionPretrainConfig, None, {**base, "max_minutes": 1e-9}), tmp_path / "cut")
    assert cut["stopped_early"] and cut["steps_done"] == 1 and (tmp_path / "cut" / "checkpoint").is_dir()
    done = pretrain_diffusion(resolve_config(DiffusionPretrainConfig, None, base), tmp_path / "cut", resume=True)
    assert done["steps_done"] == full["steps_done"] == 3
    a = load_safetensors(tmp_path / "full" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_safetensors(tmp_path / "cut" / "unet" / "diffusion_pytorch_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(MMError, match="already finished"):
        pretrain_diffusion(resolve_config(DiffusionPretrainConfig, None, base), tmp_path / "cut", resume=True)


def test_apply_preset_keeps_other_values():
    from cliperase.recipes.diffusion_pretrain import DiffusionPretrainConfig, apply_preset

    cfg = apply_preset(DiffusionPretrainConfig(clip="c", seed=5), "test")
    assert (cfg.clip, cfg.seed, cfg.steps, cfg.unet.block_out_channels) == ("c", 5, 4, [16, 32])
    assert cfg.unet.text_time_embedding  # untouched nested value survives
    with pytest.raises(ConfigError, match="preset"):
        apply_preset(cfg, "nope")


def test_pretrain_config_validation():
    from cliperase.recipes.diffusion_pretrain import DiffusionPretrainConfig, validate
    from mmcore.config import resolve_config

    with pytest.raises(ConfigError, match="--clip"):
        validate(DiffusionPretrainConfig())
    with pytest.raises(ConfigError, match="shapes"):
        validate(resolve_config(DiffusionPretrainConfig, None, {"clip": "x", "shapes": ["circle", "blob"]}))
    with pytest.raises(ConfigError, match="divisible"):
        validate(resolve_config(DiffusionPretrainConfig, None, {"clip": "x", "image_size": 18}))


@pytest.mark.slow
def test_detector_learns_the_rendering():
    from cliperase.diffusion.data import DEFAULT_SHAPES, OTHER_CLASS, detector_training_set
    from cliperase.diffusion.detector import train_detector

    shapes = list(DEFAULT_SHAPES)
    x, y = detector_training_set(shapes, 600, seed=0, image_size=16, radius_frac=0.4)
    xv, yv = detector_training_set(shapes, 200, seed=1, image_size=16, radius_frac=0.4)
    assert set(np.unique(y)) == set(range(len(shapes) + 1))
    det, m = train_detector(x, y, shapes + [OTHER_CLASS], steps=150, batch_size=64, width=16, val=(xv, yv))
    chance = 1 / (len(shapes) + 1)
    assert m["detector_val_acc"] > 2 * chance, m
    probs = det.predict(xv[:5])
    assert probs.shape == (5, len(shapes) + 1)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_detector_save_load(tmp_path):
    from cliperase.diffusion.detector import ShapeDetector

    det = ShapeDetector(["circle", "square"], image_size=16, width=8)
    det.save(tmp_path / "d")
    det2 = ShapeDetector.load(tmp_path / "d")
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(det.predict(x), det2.predict(x), rtol=1e-6)
    (tmp_path / "d" / "config.json").write_text("{}")
    with pytest.raises(MMError, match="config.json"):
        ShapeDetector.load(tmp_path / "d")


def test_concept_of():
    from cliperase.recipes.diffusion_eval import concept_of

    classes = ["circle", "semicircle", "square", "other"]
    assert concept_of("a photo of a red circle", classes) == "circle"
    assert concept_of("a semicircle", classes) == "semicircle"
    assert concept_of("A SQUARE", classes) == "square"
    with pytest.raises(ConfigError, match="names none"):
        concept_of("a dog", classes)


@pytest.mark.slow
def test_diffusion_eval_metrics_and_grid(shapes_pipeline_dir, clip_dirs, tmp_path):
    from cliperase.recipes.diffusion_eval import run_diffusion_eval

    m = run_diffusion_eval(
        clip_dirs[0], clip_dirs[1], shapes_pipeline_dir, ["a circle", "a red circle"], ["a square"],
        tmp_path / "eval", n_per_prompt=2, num_inference_steps=2,
    )
    for k in ("forget_detection_before", "forget_detection_after", "retain_detection_before", "retain_detection_after"):
        assert 0.0 <= m[k] <= 1.0
    assert m["detector"] == "shape-cnn"
    assert m["pipeline_encoder_matches_original"] is True
    assert set(m["per_concept"]) == {"circle", "square"}
    assert m["per_concept"]["circle"]["split"] == "forget"
    assert [r["prompt"] for r in m["prompts"]] == ["a circle", "a red circle", "a square"]
    assert all(r["clip_score_before"] >= 0 for r in m["prompts"])
    assert (tmp_path / "eval" / "grid.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["forget_detection_after"] == m["forget_detection_after"]
    # Default retain prompts: one "a {class}" per non-forgotten class; CLIP zero-shot detector on request.
    m2 = run_diffusion_eval(
        clip_dirs[0], clip_dirs[1], shapes_pipeline_dir, ["a circle"], None, tmp_path / "eval2",
        n_per_prompt=1, num_inference_steps=1, detector="clip", classes=["circle", "square", "triangle"],
    )
    assert m2["detector"] == "clip-zero-shot"
    assert [r["prompt"] for r in m2["prompts"]] == ["a circle", "a square", "a triangle"]
