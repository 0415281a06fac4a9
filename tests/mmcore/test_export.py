"""mm clip export's conversions: a transformers CLIPModel + CLIPProcessor with open_clip's embeddings, and an
open_clip checkpoint open_clip's own factory loads."""

from __future__ import annotations

import pytest
import torch
from mmcore.encoders.clip import create_clip, register_model_configs
from mmcore.encoders.export import export_clip, to_hf_clip
from mmcore.errors import MMError

TEXTS = ["a photo of a red circle", "a square", "two stars on the left!"]


def _micro_vit():
    torch.manual_seed(0)
    bundle = create_clip("mm-micro-clip")  # a ViT image tower, random weights (offline)
    with torch.no_grad():  # LayerNorm affine params start at 1 / 0: perturb so a missed mapping would show
        for name, p in bundle.model.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return bundle.model.eval(), bundle


def test_hf_clip_has_open_clips_image_and_text_embeddings(tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    model, bundle = _micro_vit()
    images = torch.randn(4, 3, bundle.image_size, bundle.image_size)
    tokens = bundle.tokenizer(TEXTS)
    export_clip(bundle, tmp_path / "hf", "hf")
    hf = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    processor = CLIPProcessor.from_pretrained(tmp_path / "hf")
    ids = processor.tokenizer(TEXTS, padding="max_length", max_length=tokens.shape[1], truncation=True,
                              return_tensors="pt")["input_ids"]
    assert torch.equal(ids, tokens)  # the processor's tokenizer gives open_clip's ids
    with torch.no_grad():
        ours_img, ours_txt = model.encode_image(images), model.encode_text(tokens)
        hf_img, hf_txt = hf.get_image_features(pixel_values=images), hf.get_text_features(input_ids=ids)
        hf_img = getattr(hf_img, "pooler_output", hf_img)
        hf_txt = getattr(hf_txt, "pooler_output", hf_txt)
    assert (ours_img - hf_img).abs().max() < 1e-5 and (ours_txt - hf_txt).abs().max() < 1e-5
    assert ours_img.std() > 0.01  # not a trivial match of zeros
    assert abs(hf.logit_scale.detach().exp().item() - model.logit_scale.detach().exp().item()) < 1e-5
    pixels = processor(images=[torch.randint(0, 255, (3, 40, 30), dtype=torch.uint8).permute(1, 2, 0).numpy()],
                       return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, bundle.image_size, bundle.image_size)


def test_resnet_image_tower_is_refused_with_the_reason():
    bundle = create_clip("mm-tiny-clip")
    with pytest.raises(MMError, match="ModifiedResNet"):
        to_hf_clip(bundle.model, bundle.model_cfg)


def test_open_clip_checkpoint_loads_with_open_clips_factory(tmp_path):
    import open_clip

    model, bundle = _micro_vit()
    files = export_clip(bundle, tmp_path / "oc", "open_clip")
    register_model_configs()  # the project's model names, for open_clip's factory
    tokens = bundle.tokenizer(TEXTS)
    images = torch.randn(2, 3, bundle.image_size, bundle.image_size)
    for name, pretrained in (("mm-micro-clip", str(files["weights"])), (f"local-dir:{tmp_path / 'oc'}", None)):
        loaded, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        loaded.eval()
        with torch.no_grad():
            assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens)), name
            assert torch.equal(loaded.encode_image(images), model.encode_image(images)), name
