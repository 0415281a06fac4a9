"""Zero-shot classification and retrieval Recall@K."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.data.shapes import make_shapes
from mmcore.errors import MMError
from mmcore.eval import (
    build_zero_shot_classifier,
    encode_images,
    encode_texts,
    recall_at_k,
    retrieval_eval,
    zero_shot_eval,
)
from mmcore.eval.retrieval import _shard
from recall_reference import reference_recall_multi


def _to_tensor(im) -> torch.Tensor:
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255.0




# ---------------------------------------------------------------- hand-built model with known answers


class _OneHotModel(torch.nn.Module):
    """Image embedding = one-hot of the image's (uniform) pixel value; text embedding = one-hot of the
    integer token the fake tokenizer found. Scores are therefore exactly 0 or 1."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.dim = dim
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(100.0), dtype=torch.float32))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        idx = (images[:, 0, 0, 0] * 255).round().long()
        return F.one_hot(idx, self.dim).float() * 3.0  # not normalised: the eval must normalise

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens[:, 0], self.dim).float()


def _fake_tokenizer(vocab: list[str]):
    def tok(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[next(i for i, w in enumerate(vocab) if w in t.split())] for t in texts])

    return tok


def _img(v: int) -> np.ndarray:
    return np.full((4, 4, 3), v, np.uint8)


def test_zero_shot_known_answer():
    classes = ["cat", "dog", "bird"]
    # image content (pixel value = class id) vs record label: 3 of the 9 are labelled wrongly
    content = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    labels = [0, 0, 1, 1, 1, 1, 2, 0, 0]
    data = ImageTextData(
        "toy",
        [ImageTextRecord(str(i), ["x"], label=labels[i], image=_img(c)) for i, c in enumerate(content)],
        classes,
        ["a photo of a {}", "a {} here"],
    )
    out = zero_shot_eval(
        _OneHotModel(), _fake_tokenizer(classes), data, _to_tensor, batch_size=4, return_predictions=True
    )
    assert out["n"] == 9
    assert out["accuracy"] == pytest.approx(6 / 9)
    assert out["per_class"] == pytest.approx({"cat": 2 / 4, "dog": 3 / 4, "bird": 1 / 1})
    assert out["predictions"].tolist() == content and out["labels"].tolist() == labels
    assert out["logits"].shape == (9, 3) and out["logits"][0].tolist() == pytest.approx([100.0, 0.0, 0.0])

    data.records[4].label = None
    with pytest.raises(MMError, match="no class label"):
        zero_shot_eval(_OneHotModel(), _fake_tokenizer(classes), data, _to_tensor)
    with pytest.raises(MMError, match="placeholder"):
        build_zero_shot_classifier(_OneHotModel(), _fake_tokenizer(classes), classes, ["no slot"])


def test_retrieval_known_answer():
    vocab = ["img0", "img1", "img2", "img3"]
    records = [
        ImageTextRecord("0", ["img0"], image=_img(0)),
        ImageTextRecord("1", ["img1", "img2"], image=_img(1)),  # second caption describes image 2
        ImageTextRecord("2", ["img3"], image=_img(2)),  # describes image 3 only
        ImageTextRecord("3", ["img3"], image=_img(3)),
    ]
    out = retrieval_eval(
        _OneHotModel(), _fake_tokenizer(vocab), records, _to_tensor, ks=(1, 2, 5), batch_size=3, block_size=3
    )
    # worked by hand: "img3" is ONE text owned by images 2 and 3. Image 2's only text scores 0 and
    # ranks 4th (t0, t1 tie with it, t2 beats it); text "img2" (owned by image 1 only) ranks its
    # image 4th; text "img3" is a hit through image 3.
    assert out == pytest.approx(
        {
            "i2t_R@1": 75.0,
            "i2t_R@2": 75.0,
            "i2t_R@5": 100.0,
            "t2i_R@1": 75.0,
            "t2i_R@2": 75.0,
            "t2i_R@5": 100.0,
            "n_images": 4,
            "n_texts": 4,
            "n_captions": 5,
        }
    )
    # one text per caption (clip_benchmark's definition): image 3 ties with the copy of "img3" owned
    # by image 2, and that tie counts against it
    per_caption = retrieval_eval(
        _OneHotModel(), _fake_tokenizer(vocab), records, _to_tensor, ks=(1, 2, 5), unique_texts=False
    )
    assert per_caption == pytest.approx(
        {
            "i2t_R@1": 50.0,
            "i2t_R@2": 75.0,
            "i2t_R@5": 100.0,
            "t2i_R@1": 60.0,
            "t2i_R@2": 60.0,
            "t2i_R@5": 100.0,
            "n_images": 4,
            "n_texts": 5,
            "n_captions": 5,
        }
    )


def test_perfect_model_on_class_captions_scores_100_both_ways():
    """CIFAR-100-style data: every image's caption is its class prompt, shared by all images of the
    class. A model that embeds each image and each prompt as its class is perfect: 100 both ways."""
    classes = ["apple", "bicycle", "castle"]
    records = [
        ImageTextRecord(str(i), [f"a photo of a {classes[c]}"], label=c, image=_img(c))
        for i, c in enumerate([0, 1, 2, 0, 0, 1, 2, 2, 1, 0])
    ]
    model, tok = _OneHotModel(), _fake_tokenizer(classes)
    out = retrieval_eval(model, tok, records, _to_tensor, ks=(1, 5), block_size=4)
    assert out["n_texts"] == 3 and out["n_captions"] == 10
    assert {k: v for k, v in out.items() if "@" in k} == {
        "i2t_R@1": 100.0,
        "i2t_R@5": 100.0,
        "t2i_R@1": 100.0,
        "t2i_R@5": 100.0,
    }
    # one text per caption instead: every prompt copy of another image of the class ties with the
    # image's own copy, and with ties against the query only K >= class size is a hit
    per_caption = retrieval_eval(model, tok, records, _to_tensor, ks=(1, 5), unique_texts=False)
    assert per_caption["i2t_R@1"] == 0.0 and per_caption["t2i_R@1"] < 100.0


# ---------------------------------------------------------------- a tiny random open_clip model


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg=dict(image_size=16, patch_size=8, width=16, layers=1, head_width=8),
        text_cfg=dict(context_length=16, vocab_size=49408, width=16, heads=2, layers=1),
    )
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=16)

    def transform(im) -> torch.Tensor:
        return F.interpolate(_to_tensor(im)[None], size=16, mode="bilinear", align_corners=False)[0]

    return model, tok, transform


def test_zero_shot_with_open_clip_model(tiny_clip):
    model, tok, transform = tiny_clip
    model.train()
    modes = []
    model.encode_image = lambda x, _f=model.encode_image: (modes.append(model.visual.training), _f(x))[1]
    data = make_shapes(40, seed=0)
    w = build_zero_shot_classifier(model, tok, data.classnames, data.templates, batch_size=7)
    assert w.shape == (16, 10) and torch.allclose(w.norm(dim=0), torch.ones(10), atol=1e-5)
    # manual: mean of normalised prompt embeddings per class, renormalised
    with torch.no_grad():
        e = F.normalize(model.encode_text(tok([t.format("star") for t in data.templates])), dim=-1).mean(0)
    assert torch.allclose(w[:, 3], F.normalize(e, dim=0), atol=1e-5)
    out = zero_shot_eval(model, tok, data, transform, batch_size=16, return_predictions=True)
    assert modes and not any(modes)  # images were encoded in eval mode ...
    assert model.training  # ... and the caller's training mode is restored
    del model.encode_image
    assert 0.0 <= out["accuracy"] <= 1.0 and out["n"] == 40 and set(out["per_class"]) == set(data.classnames)
    manual = (out["predictions"] == out["labels"]).float().mean().item()
    assert out["accuracy"] == pytest.approx(manual)
    feats = encode_images(model, data.records, transform)
    assert torch.allclose(out["logits"], model.logit_scale.exp() * feats @ w, atol=1e-4)
    again = zero_shot_eval(model, tok, data, transform, batch_size=5, return_predictions=True)
    assert torch.allclose(again["logits"], out["logits"], atol=1e-4)  # batch size does not matter
    only_photo = zero_shot_eval(
        model, tok, data, transform, templates=["a photo of a {}"], classnames=data.classnames
    )
    assert only_photo["n"] == 40


def test_retrieval_with_open_clip_model(tiny_clip):
    model, tok, transform = tiny_clip
    data = make_shapes(12, seed=1)
    out = retrieval_eval(model, tok, data, transform, batch_size=5, unique_texts=False, block_size=5)
    n_txt = sum(len(r.captions) for r in data.records)
    assert out["n_images"] == 12 and out["n_texts"] == out["n_captions"] == n_txt
    img = encode_images(model, data.records, transform, batch_size=4)
    texts, owner = data.texts()
    txt = encode_texts(model, tok, texts, batch_size=9)
    assert torch.allclose(img.norm(dim=1), torch.ones(12), atol=1e-5)
    expected = recall_at_k(img @ txt.T, torch.tensor(owner))
    for k in (1, 5, 10):
        assert out[f"i2t_R@{k}"] == pytest.approx(expected[f"i2t_R@{k}"])
        assert out[f"t2i_R@{k}"] == pytest.approx(expected[f"t2i_R@{k}"])
        assert 0.0 <= out[f"i2t_R@{k}"] <= 100.0
    assert out["i2t_R@1"] <= out["i2t_R@5"] <= out["i2t_R@10"]
    # the default ranks each distinct caption once, owned by every image that has it
    shared = retrieval_eval(model, tok, data, transform, batch_size=5)
    unique = list(dict.fromkeys(texts))
    assert len(unique) < n_txt and shared["n_texts"] == len(unique)  # shapes captions repeat
    owners = [sorted({o for t, o in zip(texts, owner, strict=True) if t == u}) for u in unique]
    want = reference_recall_multi(
        (img @ encode_texts(model, tok, unique).T).numpy(), [set(o) for o in owners], (1, 5, 10)
    )
    for key, v in want.items():
        assert shared[key] == pytest.approx(v), key


# ---------------------------------------------------------------- sharding across processes


@given(st.integers(0, 40), st.integers(1, 5))
def test_shards_restore_the_original_order(n, world):
    class Acc:
        num_processes = world
        process_index = 0

    shards = []
    for r in range(world):
        Acc.process_index = r
        mine, per = _shard(n, Acc)
        shards.append(mine)
    assert len({len(s) for s in shards}) == 1  # equal sizes: an all-gather needs them
    assert [i for s in shards for i in s][:n] == list(range(n))


def test_two_fake_processes_match_one(tiny_clip):
    model, tok, transform = tiny_clip
    data = make_shapes(7, seed=2)
    single = encode_images(model, data.records, transform, batch_size=3)
    parts = []

    class Acc:
        num_processes, device = 2, torch.device("cpu")

        def __init__(self, rank):
            self.process_index = rank

        def gather_for_metrics(self, x):
            parts.append(x)  # what this rank contributes to the all-gather
            return x

    for rank in range(2):
        encode_images(model, data.records, transform, batch_size=3, accelerator=Acc(rank))
    assert parts[0].shape == parts[1].shape == (4, 16)
    assert torch.allclose(torch.cat(parts)[:7], single, atol=1e-6)


_TWO_PROCESS_SCRIPT = r"""
import json, os, socket, sys
import torch, torch.multiprocessing as mp


def run(accelerator):
    import numpy as np, open_clip, torch.nn.functional as F
    from mmcore.data.shapes import make_shapes
    from mmcore.eval import retrieval_eval, zero_shot_eval

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16, vision_cfg=dict(image_size=16, patch_size=8, width=16, layers=1, head_width=8),
        text_cfg=dict(context_length=16, vocab_size=49408, width=16, heads=2, layers=1),
    )
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    tr = lambda im: F.interpolate(torch.from_numpy(np.array(im)).permute(2, 0, 1).float()[None] / 255, size=16)[0]
    data = make_shapes(11, 1)  # 11 images: an uneven split across 2 processes
    return {
        "zs": zero_shot_eval(model, tok, data, tr, batch_size=4, accelerator=accelerator),
        "ret": retrieval_eval(model, tok, data, tr, batch_size=4, accelerator=accelerator),
    }


def worker(rank, port, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from accelerate import Accelerator
    import torch.distributed as dist

    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2
    result = run(acc)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(result, f)
    acc.wait_for_everyone()
    dist.destroy_process_group()


if __name__ == "__main__":
    out = sys.argv[1]
    with open(out + ".single", "w") as f:
        json.dump(run(None), f)
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    mp.spawn(worker, args=(port, out), nprocs=2)
"""


@pytest.mark.slow
def test_two_gloo_processes_give_the_same_numbers_as_one(tmp_path):
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "two_procs.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    out = tmp_path / "two.json"
    env = {**os.environ, "MM_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text())
    one = json.loads((tmp_path / "two.json.single").read_text())
    assert two["zs"]["n"] == 11 and two["ret"]["n_images"] == 11
    assert two == one
