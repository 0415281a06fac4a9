"""BLIP through transformers (a tiny random BlipForImageTextRetrieval from a project BlipConfig) and the model family
interface both CLIP and BLIP implement: embeddings, similarity, tokenizer, preprocess, save / load, detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mmcore.data.shapes import make_shapes
from mmcore.encoders.blip import (
    BlipBundle,
    create_blip,
    load_blip,
    shapes_tokenizer,
    shapes_vocab,
)
from mmcore.encoders.family import (
    ImageTextModel,
    create_image_text_model,
    detect_family,
    get_family,
    load_image_text_model,
)
from mmcore.errors import DataError, MMError


@pytest.fixture(scope="module")
def blip() -> BlipBundle:
    torch.manual_seed(0)
    return create_blip("mm-micro-blip")


def _inputs(bundle, n: int = 4, seed: int = 0):
    data = make_shapes(n, seed=seed, image_size=bundle.image_size)
    raw = torch.from_numpy(np.stack([r.image for r in data.records])).permute(0, 3, 1, 2)
    return bundle.preprocess_eval.batch(raw), bundle.tokenizer([r.captions[0] for r in data.records]), data


def _outputs(bundle, images, tokens) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {"image": bundle.encode_image(images), "text": bundle.encode_text(tokens),
                "itm": bundle.itm_score(images, tokens)}


def test_family_interface_on_a_tiny_random_blip(blip):
    assert isinstance(blip, ImageTextModel) and blip.family == "blip"
    images, tokens, _ = _inputs(blip)
    out = _outputs(blip, images, tokens)
    assert out["image"].shape == out["text"].shape == (4, blip.hf.config.image_text_hidden_size)
    assert torch.allclose(out["image"].norm(dim=-1), torch.ones(4)) and torch.allclose(out["text"].norm(dim=-1), torch.ones(4))
    assert blip.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # BLIP's initial temperature
    sim = blip.similarity(out["image"], out["text"])
    assert torch.allclose(sim, blip.logit_scale * out["image"] @ out["text"].T)
    assert ((out["itm"] > 0) & (out["itm"] < 1)).all()
    # open_clip's calling convention: forward gives normalised features and the scale
    with torch.no_grad():
        img, txt, scale = blip.model(images, tokens)
    assert torch.allclose(img, out["image"], atol=1e-6) and float(scale) == pytest.approx(blip.logit_scale)


def test_clip_bundle_implements_the_same_interface(tmp_path):
    bundle = create_image_text_model("clip", "mm-micro-clip")
    assert isinstance(bundle, ImageTextModel) and bundle.family == "clip"
    images = torch.rand(2, 3, bundle.image_size, bundle.image_size)
    tokens = bundle.tokenizer(["a circle", "a square"])
    with torch.no_grad():
        img, txt = bundle.encode_image(images), bundle.encode_text(tokens)
        ref = bundle.model.encode_image(images, normalize=True)
    assert torch.allclose(img, ref, atol=1e-6)
    assert bundle.similarity(img, txt).shape == (2, 2)
    bundle.save(tmp_path / "clip")
    assert detect_family(tmp_path / "clip") == "clip"
    again = load_image_text_model(tmp_path / "clip")
    with torch.no_grad():
        assert torch.equal(again.encode_image(images), img)


def test_offline_tokenizer_covers_the_shapes_captions_and_spells_unknown_words():
    tok = shapes_tokenizer()
    unk = tok.unk_token_id
    captions = {c for r in make_shapes(200, seed=3).records for c in r.captions}
    for c in captions:
        assert unk not in tok(c)["input_ids"], c
    assert unk not in tok("a zebra, 42 stripes!")["input_ids"]  # letters, digits, punctuation: no [UNK]
    vocab = shapes_vocab()
    assert list(vocab)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(vocab) == len(set(vocab.values()))


def test_tokenizer_pads_to_the_context_length_with_the_pad_id(blip):
    ids = blip.tokenizer(["a photo of a circle", "a large red circle on the left"])
    assert ids.shape == (2, blip.tokenizer.context_length) and ids.dtype == torch.long
    assert (ids[:, 0] == blip.tokenizer.hf.cls_token_id).all()
    assert (ids[0] == blip.tokenizer.pad_token_id).sum() > (ids[1] == blip.tokenizer.pad_token_id).sum()


def test_save_load_round_trip_gives_equal_outputs(blip, tmp_path):
    with torch.no_grad():
        blip.model.logit_scale.fill_(3.0)  # a learned temperature survives the round trip
    images, tokens, _ = _inputs(blip)
    want = _outputs(blip, images, tokens)
    blip.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    assert detect_family(tmp_path / "m") == "blip"
    again = load_image_text_model(tmp_path / "m")
    assert isinstance(again, BlipBundle) and again.model_name == "mm-micro-blip"
    assert again.logit_scale == pytest.approx(float(np.exp(3.0)), rel=1e-6)
    assert torch.equal(again.tokenizer(["a red circle"]), blip.tokenizer(["a red circle"]))
    images_again, tokens_again, _ = _inputs(again)  # the reloaded preprocess and tokenizer
    assert torch.equal(images_again, images) and torch.equal(tokens_again, tokens)
    got = _outputs(again, images_again, tokens_again)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    sd1, sd2 = blip.model.state_dict(), again.model.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    with torch.no_grad():
        blip.model.logit_scale.fill_(float(np.log(1 / 0.07)))


def test_saved_folder_loads_with_transformers_from_pretrained(blip, tmp_path):
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    blip.save(tmp_path / "m")
    hf = BlipForImageTextRetrieval.from_pretrained(tmp_path / "m").eval()
    proc = BlipProcessor.from_pretrained(tmp_path / "m")
    images, tokens, data = _inputs(blip, n=2)
    text = data.records[0].captions[0]
    inputs = proc(images=[data.records[0].image], text=[text], return_tensors="pt")
    # the processor's pixels and ids are this bundle's
    assert torch.allclose(inputs["pixel_values"], images[:1], atol=1e-5)
    ours_ids = blip.tokenizer([text])[0]
    assert inputs["input_ids"][0].tolist() == ours_ids[ours_ids != blip.tokenizer.pad_token_id].tolist()
    with torch.no_grad():
        itc = hf(**inputs, use_itm_head=False).itm_score  # cosine similarity
        itm = hf(**inputs).itm_score.softmax(dim=-1)[:, 1]
        ours = _outputs(blip, images[:1], blip.tokenizer([text]))
    assert itc[0, 0].item() == pytest.approx((ours["image"] @ ours["text"].T)[0, 0].item(), abs=1e-5)
    assert itm[0].item() == pytest.approx(ours["itm"][0].item(), abs=1e-5)


def test_real_path_loads_a_plain_transformers_folder(tmp_path):
    """A folder written by transformers alone (no mm_blip keys): the default temperature, its own tokenizer and
    image processor, found by the family loader."""
    from mmcore.encoders.blip import blip_config
    from transformers import BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    cfg = blip_config("mm-micro-blip")
    delattr(cfg, "mm_blip")
    torch.manual_seed(1)
    hf = BlipForImageTextRetrieval(cfg)
    hf.save_pretrained(tmp_path / "plain")
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 16, "width": 16}),
                         tokenizer=shapes_tokenizer(model_max_length=12))
    proc.save_pretrained(tmp_path / "plain")
    assert "mm_blip" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    bundle = load_image_text_model(tmp_path / "plain")
    assert isinstance(bundle, BlipBundle) and bundle.image_size == 16
    assert bundle.logit_scale == pytest.approx(float(np.exp(cfg.logit_scale_init_value)), rel=1e-5)
    assert bundle.tokenizer.context_length == 12  # the tokenizer's model_max_length
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        got = bundle.encode_image(images)
        ref = torch.nn.functional.normalize(hf.vision_proj(hf.vision_model(pixel_values=images).last_hidden_state[:, 0]), dim=-1)
    assert torch.allclose(got, ref, atol=1e-6)
    # the model/ of a run directory is found too
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"steps": 1}')
    bundle.save(tmp_path / "run" / "model")
    assert detect_family(tmp_path / "run") == "blip" and isinstance(load_blip(tmp_path / "run"), BlipBundle)


def test_registry_and_detection_errors(tmp_path):
    assert get_family("BLIP").name == "blip" and get_family("clip").default_model == "mm-tiny-clip"
    with pytest.raises(MMError, match="did you mean 'blip'"):
        get_family("blipp")
    (tmp_path / "empty").mkdir()
    assert detect_family(tmp_path / "empty") is None and detect_family(tmp_path / "nothing") is None
    with pytest.raises(DataError, match="not a saved model directory of a known family"):
        load_image_text_model(tmp_path / "empty")
    with pytest.raises(MMError, match="no pretrained tag"):
        create_blip("mm-micro-blip", "weights.safetensors")
    with pytest.raises(MMError, match="unknown project BLIP|model directory not found"):
        load_blip("./no-such-folder")
    (tmp_path / "notok").mkdir()
    (tmp_path / "notok" / "config.json").write_text('{"model_type": "blip"}')
    with pytest.raises(DataError, match="no tokenizer files"):
        load_blip(tmp_path / "notok")


def test_zero_shot_and_retrieval_take_a_blip_unchanged(blip):
    from mmcore.eval.retrieval import retrieval_eval
    from mmcore.eval.zeroshot import zero_shot_eval

    data = make_shapes(20, seed=2, image_size=blip.image_size)
    r = zero_shot_eval(blip.model, blip.tokenizer, data, blip.preprocess_eval, batch_size=8)
    assert 0.0 <= r["accuracy"] <= 1.0 and r["n"] == 20
    rr = retrieval_eval(blip.model, blip.tokenizer, data, blip.preprocess_eval, ks=(1, 5), batch_size=8)
    assert 0.0 <= rr["i2t_R@1"] <= 100.0


def test_hard_negatives_are_never_positives_and_follow_the_seed(blip):
    images, tokens, _ = _inputs(blip, n=6)
    positive = torch.eye(6, dtype=torch.bool)
    positive[0, 1] = positive[1, 0] = True  # texts 0 and 1 are true of both images 0 and 1
    captured = []
    orig = blip.model.itm_logits

    def spy(embeds, toks):
        captured.append((embeds.clone(), toks.clone()))
        return orig(embeds, toks)

    blip.model.itm_logits = spy
    try:
        with torch.no_grad():
            out1 = blip.model(images, tokens, itm_positive=positive, itm_seed=5)
            out2 = blip.model(images, tokens, itm_positive=positive, itm_seed=5)
    finally:
        del blip.model.itm_logits
    _, _, _, logits, labels = out1
    assert logits.shape == (18, 2) and labels.tolist() == [1] * 6 + [0] * 12
    assert torch.equal(out1[3], out2[3])  # same seed, same negatives
    with torch.no_grad():
        v = blip.model.image_embeds(images)
    embeds, toks = captured[0]
    for n in range(6, 18):  # every negative pair: an (image, text) not marked positive
        i = next(a for a in range(6) if torch.equal(embeds[n], v[a]))
        j = next(b for b in range(6) if torch.equal(toks[n], tokens[b]))
        assert not positive[i, j], (n, i, j)
