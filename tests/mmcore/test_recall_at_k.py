"""Recall@K: the dense and the blocked (bounded-memory) computation against brute force, with ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mmcore.errors import MMError
from mmcore.eval import (
    recall_at_k,
    recall_at_k_blocked,
)
from recall_reference import reference_recall_multi

# ---------------------------------------------------------------- recall_at_k vs brute force


def _reference_recall(sim: np.ndarray, owner: list[int], ks) -> dict[str, float]:
    """Sort-based reference: rank candidates by score, ties broken against the query (wrong
    candidates first), and look where the first correct one lands."""
    n_img, n_txt = sim.shape
    out = {}
    i2t_first, t2i_first = [], []
    for i in range(n_img):
        if i not in owner:
            continue
        order = sorted(range(n_txt), key=lambda t: (-sim[i, t], owner[t] == i))
        i2t_first.append(next(pos for pos, t in enumerate(order) if owner[t] == i))
    for t in range(n_txt):
        order = sorted(range(n_img), key=lambda i: (-sim[i, t], i == owner[t]))
        t2i_first.append(order.index(owner[t]))
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * sum(p < k for p in i2t_first) / len(i2t_first)
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * sum(p < k for p in t2i_first) / len(t2i_first)
    return out


@st.composite
def _retrieval_cases(draw):
    n_img = draw(st.integers(1, 7))
    owner = draw(st.lists(st.integers(0, n_img - 1), min_size=1, max_size=15))
    # small integer scores: plenty of ties, which is where implementations disagree
    sim = draw(st.lists(st.integers(-3, 3), min_size=n_img * len(owner), max_size=n_img * len(owner)))
    return np.asarray(sim, dtype=np.float32).reshape(n_img, len(owner)), owner


@settings(max_examples=150, deadline=None)
@given(_retrieval_cases(), st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True))
def test_recall_at_k_matches_brute_force(case, ks):
    sim, owner = case
    got = recall_at_k(torch.from_numpy(sim), torch.tensor(owner), ks)
    want = _reference_recall(sim, owner, ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key]), key


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 8), st.integers(1, 3), st.integers(0, 10_000))
def test_recall_at_k_agrees_with_topk_without_ties(n_img, per_image, seed):
    g = torch.Generator().manual_seed(seed)
    owner = torch.arange(n_img).repeat_interleave(per_image)
    sim = torch.randn(n_img, len(owner), generator=g)  # continuous: no ties
    got = recall_at_k(sim, owner, ks=(1, 2))
    for k in (1, 2):
        top_t = sim.topk(min(k, sim.shape[1]), dim=1).indices
        i2t = torch.stack([(owner[top_t[i]] == i).any() for i in range(n_img)]).float().mean() * 100
        top_i = sim.topk(min(k, n_img), dim=0).indices
        t2i = (top_i == owner[None, :]).any(0).float().mean() * 100
        assert got[f"i2t_R@{k}"] == pytest.approx(i2t.item())
        assert got[f"t2i_R@{k}"] == pytest.approx(t2i.item())


def test_recall_constant_scores_is_not_perfect():
    sim = torch.zeros(4, 4)
    out = recall_at_k(sim, torch.arange(4), ks=(1, 4))
    assert out["i2t_R@1"] == 0.0 and out["t2i_R@1"] == 0.0 and out["i2t_R@4"] == 100.0
    with pytest.raises(MMError, match="text_to_image"):
        recall_at_k(sim, torch.tensor([0, 1, 2, 9]))


# ---------------------------------------------------------------- blocked recall vs the dense path


@st.composite
def _embedding_cases(draw):
    """Small-integer embeddings (every dot product is exact in float32, so any summation order gives
    the same bits) with forced ties: duplicated images and texts, and coarse values."""
    n_img = draw(st.integers(1, 9))
    n_txt = draw(st.integers(1, 14))
    d = draw(st.integers(1, 4))
    vals = st.integers(-2, 2)
    img = np.asarray(draw(st.lists(vals, min_size=n_img * d, max_size=n_img * d)), np.float32).reshape(
        n_img, d
    )
    txt = np.asarray(draw(st.lists(vals, min_size=n_txt * d, max_size=n_txt * d)), np.float32).reshape(
        n_txt, d
    )
    if n_img > 1 and draw(st.booleans()):
        img[-1] = img[0]  # a duplicated image
    if n_txt > 1 and draw(st.booleans()):
        txt[-1] = txt[0]  # a duplicated text (a different string with the same embedding)
    owner = draw(st.lists(st.integers(0, n_img - 1), min_size=n_txt, max_size=n_txt))
    return torch.from_numpy(img), torch.from_numpy(txt), owner


@settings(max_examples=200, deadline=None)
@given(
    _embedding_cases(), st.lists(st.integers(1, 10), min_size=1, max_size=3, unique=True), st.integers(1, 10)
)
def test_blocked_recall_equals_dense_with_forced_ties(case, ks, block_size):
    img, txt, owner = case
    dense = recall_at_k(img @ txt.T, torch.tensor(owner), ks)
    assert recall_at_k_blocked(img, txt, owner, ks, block_size=block_size) == dense
    # the same owners given as one-element lists (the multi-owner form)
    assert recall_at_k_blocked(img, txt, [[o] for o in owner], ks, block_size=block_size) == dense


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), st.integers(1, 17), st.integers(0, 10_000))
def test_blocked_recall_equals_dense_on_float_embeddings(n_img, n_txt, block_size, seed):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_img, 8, generator=g), dim=1)
    owner = torch.randint(0, n_img, (n_txt,), generator=g)
    txt = F.normalize(img[owner] + torch.randn(n_txt, 8, generator=g), dim=1)
    # On a 2^-6 grid every score is exact whatever the summation order, so a duplicated image ties with its
    # twin in the blocked and in the dense product alike (off the grid, rounding breaks the tie either way).
    img, txt = torch.round(img * 64) / 64, torch.round(txt * 64) / 64
    img[n_img // 2] = img[0]  # exact duplicates: ties between different images
    ks = (1, 3, 10)
    assert recall_at_k_blocked(img, txt, owner, ks, block_size=block_size) == recall_at_k(
        img @ txt.T, owner, ks
    )




@settings(max_examples=150, deadline=None)
@given(_embedding_cases(), st.data(), st.integers(1, 5))
def test_blocked_recall_with_shared_texts_matches_brute_force(case, data, block_size):
    img, txt, _ = case
    n_img = img.shape[0]
    owners = [
        set(data.draw(st.lists(st.integers(0, n_img - 1), min_size=1, max_size=4))) for _ in range(len(txt))
    ]
    ks = (1, 2, 5)
    got = recall_at_k_blocked(img, txt, [sorted(o) for o in owners], ks, block_size=block_size)
    want = reference_recall_multi((img @ txt.T).numpy(), owners, ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key]), key


def test_blocked_recall_rejects_bad_owners():
    img, txt = torch.eye(3), torch.eye(3)
    with pytest.raises(MMError, match="outside"):
        recall_at_k_blocked(img, txt, [0, 1, 3])
    with pytest.raises(MMError, match="one per text"):
        recall_at_k_blocked(img, txt, [0, 1])
    with pytest.raises(MMError, match="at least one image"):
        recall_at_k_blocked(img, txt, [[0], [], [2]])
    with pytest.raises(MMError, match="block_size"):
        recall_at_k_blocked(img, txt, [0, 1, 2], block_size=0)


_MEMORY_SCRIPT = r"""
import resource, sys, torch
from mmcore.eval.retrieval import recall_at_k_blocked

torch.set_num_threads(1)
n, d = 20_000, 8
g = torch.Generator().manual_seed(0)
img = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
txt = torch.nn.functional.normalize(img + 0.5 * torch.randn(n, d, generator=g), dim=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = recall_at_k_blocked(img, txt, torch.arange(n), (1, 5, 10), block_size=256)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, out["i2t_R@10"], out["t2i_R@10"])
"""


def test_blocked_recall_memory_stays_bounded(tmp_path):
    """20k x 20k similarities are 1.6 GB as a dense float matrix (plus 0.4 GB per bool mask); in
    blocks of 256 images the peak grows by under 200 MB (most of it the BLAS library loading)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    grew_mb, r10_i2t, r10_t2i = proc.stdout.split()
    assert int(grew_mb) < 600, f"peak memory grew by {grew_mb} MB"
    assert 0.0 < float(r10_i2t) <= 100.0 and 0.0 < float(r10_t2i) <= 100.0
