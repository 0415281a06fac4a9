"""open_clip text tower → transformers CLIPTextModel + offline CLIPTokenizer."""

from __future__ import annotations

import pytest
import torch
from mmcore.encoders.clip import create_clip
from mmcore.encoders.hf_export import build_clip_tokenizer, export_text_tower, save_hf_text_encoder
from mmcore.errors import MMError

TEXTS = [
    "a photo of a circle",
    "A Small RED   star on the left!!",
    "hello world, it's 3 o'clock ! 42",
    "a large cyan semicircle at the bottom",
    "tokens " * 40,  # longer than the context: truncated, ends with <end_of_text>
]


def _open_clip_hidden(model, ids):
    x = model.token_embedding(ids) + model.positional_embedding[: ids.shape[1]]
    x = model.transformer(x, attn_mask=model.attn_mask[: ids.shape[1], : ids.shape[1]])
    return model.ln_final(x)


def _check(name: str):
    torch.manual_seed(0)
    b = create_clip(name)
    m = b.model.eval()
    hf, tok = export_text_tower(m, b.model_cfg)
    ctx = b.model_cfg["text_cfg"].get("context_length", 77)
    ids = b.tokenizer(TEXTS)
    hf_ids = tok(TEXTS, padding="max_length", max_length=ctx, truncation=True, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, hf_ids)
    with torch.no_grad():
        ref = _open_clip_hidden(m, ids)
        out = hf(input_ids=ids)
        assert (out.last_hidden_state - ref).abs().max().item() < 1e-5
        pooled_ref = ref[torch.arange(len(TEXTS)), ids.argmax(dim=-1)]
        assert (out.pooler_output - pooled_ref).abs().max().item() < 1e-5
        hfp, _ = export_text_tower(m, name, with_projection=True)
        assert (hfp(input_ids=ids).text_embeds - m.encode_text(ids)).abs().max().item() < 1e-5
    return hf


def test_tiny_and_micro_configs_match_open_clip():
    hf = _check("mm-tiny-clip")
    assert hf.config.hidden_act == "gelu"
    hf = _check("mm-micro-clip")  # quick_gelu variant
    assert hf.config.hidden_act == "quick_gelu"


@pytest.mark.slow
def test_vit_b_32_random_init_matches_open_clip():
    _check("ViT-B-32")


def test_tokenizer_matches_open_clip_77():
    from open_clip.tokenizer import SimpleTokenizer

    tok = build_clip_tokenizer(77)
    ref = SimpleTokenizer(context_length=77)(TEXTS)
    got = tok(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]
    assert torch.equal(ref, got)


def test_save_hf_text_encoder_roundtrip(tmp_path):
    from transformers import CLIPTextModel, CLIPTokenizer

    b = create_clip("mm-micro-clip")
    paths = save_hf_text_encoder(tmp_path, b.model, b.model_cfg)
    hf = CLIPTextModel.from_pretrained(paths["text_encoder"]).eval()
    tok = CLIPTokenizer.from_pretrained(paths["tokenizer"])
    assert any(p.suffix == ".safetensors" for p in paths["text_encoder"].iterdir())
    ids = tok(["a red star"], padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, b.tokenizer(["a red star"]))
    with torch.no_grad():
        assert (hf(input_ids=ids).last_hidden_state - _open_clip_hidden(b.model.eval(), ids)).abs().max() < 1e-5


def test_unsupported_text_towers_raise():
    import copy

    b = create_clip("mm-micro-clip")
    cfg = copy.deepcopy(b.model_cfg)
    cfg["text_cfg"]["hf_model_name"] = "bert-base-uncased"
    with pytest.raises(MMError, match="HF text tower"):
        export_text_tower(b.model, cfg)
    b.model.attn_mask = None  # what no_causal_mask builds
    with pytest.raises(MMError, match="bidirectional"):
        export_text_tower(b.model, b.model_cfg)
    with pytest.raises(MMError, match="not an open_clip TextTransformer"):
        export_text_tower(torch.nn.Linear(2, 2))
