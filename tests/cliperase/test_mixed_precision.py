"""Mixed precision: the frozen original runs under the same autocast as the unlearned model, so at step 0
(the unlearned model still a copy of the original) the terms comparing them are what a hand computation
under that autocast gives, and MSE / KL to the original are zero."""

import copy

import pytest
import torch
import torch.nn.functional as F
from cliperase import losses
from cliperase.forget_sets import split_forget_retain
from cliperase.methods import unlearn
from cliperase.recipes.runner import load_data
from cliperase.templates import config_templates
from cliperase.training import ImageBank, pair_text
from cliperase_testutil import tiny_config
from mmcore.distributed import AcceleratorConfig, StepBatches, build_accelerator
from mmcore.encoders.clip import create_clip


def _step0_inputs(cfg, bundle, split):
    """The images and texts of step 0's forget and retain batches, as the trainer draws them (1 process)."""
    out = {}
    templates = config_templates(split.retain, cfg)
    for key, data, bs, seed in (("f", split.forget, cfg.forget_batch_size, cfg.seed),
                                ("r", split.retain, cfg.batch_size, cfg.seed + 1)):
        batch = StepBatches.for_processes(len(data), bs, seed, 1, key).at(0)
        mode = (cfg.forget_text or cfg.text) if key == "f" else cfg.text
        texts = [pair_text(data.records[i], data, mode, (cfg.seed, 0, ord(key), i), templates) for i in batch]
        out[key] = (ImageBank(data.records, bundle.preprocess_eval)(batch), texts)
    return out


def _encode(model, images, tokens):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = model.encode_image(images, normalize=False)
        txt = model.encode_text(tokens, normalize=False)
    return img.float(), txt.float()


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state: a bf16 Accelerator needs a fresh one, and the tests after
    this one must not inherit bf16."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.parametrize("method", ["cliperase", "multidelete"])
def test_bf16_step0_losses_match_a_hand_computation_under_the_same_autocast(method, fresh_accelerate_state):
    cfg = tiny_config(method=method, steps=1, checkpoint_every=0, towers="both",
                      accelerator=AcceleratorConfig(cpu=True, log_with="none", mixed_precision="bf16"))
    acc = build_accelerator(cfg.accelerator)
    assert acc.native_amp, "accelerate is expected to autocast bf16 on the CPU"
    torch.manual_seed(0)
    bundle = create_clip("mm-micro-clip")
    original = copy.deepcopy(bundle.model).eval()
    train, test = load_data(cfg, bundle.image_size)
    split = split_forget_retain(train, test, cfg.forget)
    inp = _step0_inputs(cfg, bundle, split)
    log = unlearn(bundle, split, cfg, acc).last_log  # steps=1: the losses of step 0

    (img_f_in, texts_f), (img_r_in, texts_r) = inp["f"], inp["r"]
    nf = len(texts_f)
    with torch.no_grad():
        # the unlearned model's one forward over forget + retain rows, under bf16 autocast
        img, txt = _encode(original, torch.cat([img_f_in, img_r_in]), bundle.tokenizer(texts_f + texts_r))
        scale = original.logit_scale.exp()
        f_img, f_txt, r_img, r_txt = img[:nf], txt[:nf], img[nf:], txt[nf:]
        if method == "cliperase":
            o_img, o_txt = _encode(original, img_r_in, bundle.tokenizer(texts_r))  # the original on retain rows
            fm = losses.forget_loss(f_img, f_txt, cfg.similarity, cfg.fm_margin)
            rm = losses.retain_loss(r_img, r_txt, scale, texts_r)
            cm = losses.consistency_loss(r_img, r_txt, scale, o_img, o_txt, scale)
            assert log["fm"] == pytest.approx(fm.item(), rel=1e-4, abs=1e-6)
            assert log["rm"] == pytest.approx(rm.item(), rel=1e-4, abs=1e-6)
            assert log["cm"] == pytest.approx(cm.item(), rel=1e-3, abs=1e-6)
            assert log["cm"] < 1e-4  # a copy is consistent with its original under the same autocast
            # the fp32 original the frozen copy used to be: a clearly larger step-0 KL
            o32 = (original.encode_image(img_r_in, normalize=False), original.encode_text(bundle.tokenizer(texts_r), normalize=False))
            assert losses.consistency_loss(r_img, r_txt, scale, *o32, scale).item() > 10 * max(log["cm"], 1e-6)
        else:
            perm = losses.decouple_permutation(nf, cfg.seed, 0)
            want = losses.multidelete_losses(f_img, f_txt, r_img, r_txt, f_img, f_txt, r_img, r_txt, perm)
            for k in ("decouple", "multimodal", "unimodal"):
                assert log[k] == pytest.approx(want[k].item(), rel=1e-4, abs=1e-7), k
            assert log["multimodal"] == 0.0 and log["unimodal"] == 0.0  # bitwise: same inputs, same autocast
            # against an fp32 original the retention terms would start at the bf16 rounding gap
            o_img = original.encode_image(img_f_in, normalize=False)
            gap = F.mse_loss(F.normalize(f_img, dim=-1), F.normalize(o_img, dim=-1)).item()
            assert gap > 1e-7
