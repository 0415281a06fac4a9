"""mmcore.encoders.clip: project configs, factory, checkpoints, save/load, preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mmcore.encoders.clip import (
    TensorPreprocess,
    count_parameters,
    create_clip,
    load_clip,
    register_model_configs,
    save_clip,
)
from mmcore.errors import DataError, MMError


def test_register_model_configs_is_idempotent():
    import open_clip

    names = register_model_configs()
    assert {"mm-tiny-clip", "mm-micro-clip"} <= set(names)
    before = len(open_clip.list_models())
    assert register_model_configs() == names
    assert len(open_clip.list_models()) == before
    assert all(n in open_clip.list_models() for n in names)


def test_tiny_clip_shapes_and_size():
    b = create_clip("mm-tiny-clip")
    assert b.image_size == 32 and b.model_name == "mm-tiny-clip"
    assert 1_000_000 < count_parameters(b.model) < 16_000_000
    tokens = b.tokenizer(["a small red circle on the left", "a photo of a circle"])
    ctx = b.model_cfg["text_cfg"]["context_length"]
    assert tokens.shape == (2, ctx)
    # short context: the end-of-text token is present and pooling picks it
    assert (tokens.argmax(dim=1) > 0).all() and (tokens.max(dim=1).values == 49407).all()
    with torch.no_grad():
        img = b.model.encode_image(torch.randn(3, 3, 32, 32))
        txt = b.model.encode_text(tokens)
    assert img.shape == (3, b.model_cfg["embed_dim"]) and txt.shape == (2, b.model_cfg["embed_dim"])


def test_long_caption_truncated_to_context_with_eot():
    b = create_clip("mm-micro-clip")
    ctx = b.model_cfg["text_cfg"]["context_length"]
    tokens = b.tokenizer(["word " * 100])
    assert tokens.shape == (1, ctx) and tokens[0, -1].item() == 49407 and tokens[0, 0].item() == 49406


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(MMError, match="mm-tiny-clip"):
        create_clip("mm-tiny-clp")
    with pytest.raises(MMError, match="unknown pretrained tag"):
        create_clip("mm-micro-clip", "no-such-tag")


def test_preprocess_accepts_pil_array_tensor_and_is_cheap():
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    ev = TensorPreprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), train=False)
    a = ev(arr)
    b = ev(Image.fromarray(arr))
    c = ev(torch.from_numpy(arr).permute(2, 0, 1))
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and torch.equal(a, c)
    assert -1.001 <= a.min() and a.max() <= 1.001
    # train-time shift: deterministic given a generator, differs from eval, keeps shape
    tr = TensorPreprocess(32, (0.5,) * 3, (0.5,) * 3, train=True, max_shift=2)
    batch = torch.from_numpy(np.stack([arr[:32, :32]] * 4)).permute(0, 3, 1, 2)
    x1 = tr.batch(batch, torch.Generator().manual_seed(1))
    x2 = tr.batch(batch, torch.Generator().manual_seed(1))
    assert x1.shape == (4, 3, 32, 32) and torch.equal(x1, x2)
    assert not torch.equal(x1, ev.batch(batch))


def test_save_load_roundtrip(tmp_path):
    b = create_clip("mm-micro-clip")
    save_clip(b.model, tmp_path, b.model_name, b.model_cfg)
    meta = json.loads((tmp_path / "clip_config.json").read_text())
    assert meta["model_name"] == "mm-micro-clip" and (tmp_path / "model.safetensors").is_file()
    b2 = load_clip(tmp_path)
    for (k, v), (k2, v2) in zip(b.model.state_dict().items(), b2.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    # a name still works through load_clip
    assert load_clip("mm-micro-clip").model_name == "mm-micro-clip"


def test_local_checkpoints_safetensors_and_pt(tmp_path):
    from mmcore.checkpoint import save_model

    src = create_clip("mm-micro-clip").model
    save_model(src, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        m = create_clip("mm-micro-clip", str(tmp_path / f)).model
        assert torch.equal(m.visual.conv1.weight, src.visual.conv1.weight), f
        assert torch.equal(m.token_embedding.weight, src.token_embedding.weight), f


def test_checkpoint_of_other_architecture_is_a_clear_error(tmp_path):
    from mmcore.checkpoint import save_model

    save_model(create_clip("mm-micro-clip").model, tmp_path / "micro.safetensors")
    torch.save(create_clip("mm-micro-clip").model.state_dict(), tmp_path / "micro.pt")
    with pytest.raises(DataError, match="architecture"):
        create_clip("mm-tiny-clip", str(tmp_path / "micro.safetensors"))
    with pytest.raises(DataError, match="architecture"):
        create_clip("mm-tiny-clip", str(tmp_path / "micro.pt"))


def test_pickled_object_refused_by_weights_only(tmp_path):
    import argparse

    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "evil.pt")  # an arbitrary pickled object
    with pytest.raises(DataError, match="weights_only"):
        create_clip("mm-micro-clip", str(tmp_path / "evil.pt"))


def test_missing_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        create_clip("mm-micro-clip", str(tmp_path / "nope.safetensors"))
    with pytest.raises(DataError, match="not found"):
        load_clip(tmp_path / "missing_dir")
    with pytest.raises(DataError, match="clip_config.json"):
        load_clip(tmp_path)  # exists but is not a model dir
    (tmp_path / "clip_config.json").write_text(json.dumps({"model_name": "mm-micro-clip", "model_cfg": {}}))
    with pytest.raises(DataError, match="weights"):
        load_clip(tmp_path)


def test_standard_open_clip_name_random_init():
    b = create_clip("RN50")  # an open_clip built-in, random weights, standard 224-px transforms
    assert b.image_size == 224 and not isinstance(b.preprocess_eval, TensorPreprocess)
    from PIL import Image

    x = b.preprocess_eval(Image.new("RGB", (300, 200), (120, 30, 200)))
    assert x.shape == (3, 224, 224)
