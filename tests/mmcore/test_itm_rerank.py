"""Recall@K ranked by ITC and re-ranked by ITM over the top k (BLIP's evaluation) against a brute-force reference,
with ties; re-ranking changes a ranking when ITM disagrees with ITC; the model-level scorer on a tiny random BLIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmcore.eval.rerank import recall_at_k_reranked
from mmcore.eval.retrieval import recall_at_k_blocked
from recall_reference import reference_recall_multi


def reference_reranked(itc: np.ndarray, itm: np.ndarray, owners: list[set[int]], ks, k: int) -> dict[str, float]:
    """Brute force: per query, sort by (-itc, own, index), keep the first k, order them by (-(itm + itc), own) and
    put every other item after them in ITC order; the rank is where the first own item lands."""
    n_img, n_txt = itc.shape

    def first_own(scores_itc, scores_itm, own):
        n = len(scores_itc)
        order = sorted(range(n), key=lambda g: (-scores_itc[g], g in own, g))
        cand, rest = order[:k], order[k:]
        cand = sorted(cand, key=lambda g: (-(scores_itm[g] + scores_itc[g]), g in own))
        return next(pos for pos, g in enumerate(cand + rest) if g in own)

    i2t = [first_own(itc[i], itm[i], {t for t in range(n_txt) if i in owners[t]})
           for i in range(n_img) if any(i in o for o in owners)]
    t2i = [first_own(itc[:, t], itm[:, t], owners[t]) for t in range(n_txt)]
    out = {f"i2t_R@{kk}": 100.0 * sum(p < kk for p in i2t) / len(i2t) for kk in ks}
    out |= {f"t2i_R@{kk}": 100.0 * sum(p < kk for p in t2i) / len(t2i) for kk in ks}
    return out


def _dense_scorer(itm: torch.Tensor):
    return lambda i, t: itm[i, t]


@st.composite
def _cases(draw):
    n_img = draw(st.integers(1, 6))
    n_txt = draw(st.integers(1, 9))
    owners = [set(draw(st.lists(st.integers(0, n_img - 1), min_size=1, max_size=2))) for _ in range(n_txt)]
    dim = 2
    # small integer features and ITM scores: exact sums, plenty of ties in both
    img = draw(st.lists(st.integers(-2, 2), min_size=n_img * dim, max_size=n_img * dim))
    txt = draw(st.lists(st.integers(-2, 2), min_size=n_txt * dim, max_size=n_txt * dim))
    itm = draw(st.lists(st.integers(-3, 3), min_size=n_img * n_txt, max_size=n_img * n_txt))
    return (np.asarray(img, np.float32).reshape(n_img, dim), np.asarray(txt, np.float32).reshape(n_txt, dim),
            np.asarray(itm, np.float32).reshape(n_img, n_txt), owners)


@settings(max_examples=150, deadline=None)
@given(_cases(), st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True), st.integers(1, 5),
       st.integers(1, 3))
def test_reranked_recall_matches_brute_force_with_ties(case, ks, k, block_size):
    img, txt, itm, owners = case
    got = recall_at_k_reranked(torch.from_numpy(img), torch.from_numpy(txt), [sorted(o) for o in owners],
                               _dense_scorer(torch.from_numpy(itm)), ks, k=k, block_size=block_size)
    want = reference_reranked(img @ txt.T, itm, owners, ks, k)
    for key in want:
        assert got[key] == pytest.approx(want[key]), key


@settings(max_examples=40, deadline=None)
@given(_cases(), st.integers(1, 5))
def test_constant_itm_keeps_the_itc_recalls(case, k):
    """ITM scoring every pair alike leaves the ITC order (and its tie rule): the recalls of recall_at_k_blocked."""
    img, txt, _, owners = case
    ks = (1, 2, 3)
    got = recall_at_k_reranked(torch.from_numpy(img), torch.from_numpy(txt), [sorted(o) for o in owners],
                               lambda i, t: torch.zeros(i.numel()), ks, k=k)
    want = recall_at_k_blocked(torch.from_numpy(img), torch.from_numpy(txt), [sorted(o) for o in owners], ks)
    assert want == reference_recall_multi(img @ txt.T, owners, ks)
    for key in want:
        assert got[key] == pytest.approx(want[key]), key


def test_reranking_changes_a_ranking_when_itm_disagrees_with_itc():
    # 3 images, 3 texts, text j owned by image j; ITC prefers the wrong text for image 0 and text 0
    img = torch.eye(3)
    txt = torch.tensor([[0.5, 0.0, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    itm = torch.zeros(3, 3)
    itm[0, 0] = 5.0  # the matching head knows image 0 goes with text 0
    owners = [0, 1, 2]
    itc = recall_at_k_blocked(img, txt, owners, ks=(1,))
    assert itc["i2t_R@1"] == pytest.approx(200 / 3)  # image 0 ranks text 1 first
    got = recall_at_k_reranked(img, txt, owners, _dense_scorer(itm), ks=(1, 2), k=2)
    assert got["i2t_R@1"] == pytest.approx(100.0)
    assert got["itm_pairs"] > 0
    # k=1: the candidate list holds only ITC's (wrong) top text, so nothing can change
    only_top = recall_at_k_reranked(img, txt, owners, _dense_scorer(itm), ks=(1,), k=1)
    assert only_top["i2t_R@1"] == pytest.approx(itc["i2t_R@1"])
    # an ITM that disagrees the other way turns an ITC hit into a miss
    bad = torch.zeros(3, 3)
    bad[2, 0] = 9.0
    worse = recall_at_k_reranked(img, txt, owners, _dense_scorer(bad), ks=(1,), k=3)
    assert worse["i2t_R@1"] < itc["i2t_R@1"]


def test_only_top_k_candidates_of_itc_hits_are_scored():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(20, 8, generator=g), torch.randn(30, 8, generator=g)
    owners = torch.arange(30) % 20
    seen = []

    def scorer(i, t):
        seen.append(i.numel())
        return torch.zeros(i.numel())

    out = recall_at_k_reranked(img, txt, owners, scorer, ks=(1, 5), k=4)
    assert out["itm_pairs"] == seen[0] <= 4 * (20 + 30)


def test_bad_k_and_bad_scorer_are_errors():
    from mmcore.errors import MMError

    img, txt = torch.eye(2), torch.eye(2)
    with pytest.raises(MMError, match="k must be"):
        recall_at_k_reranked(img, txt, [0, 1], lambda i, t: torch.zeros(i.numel()), k=0)
    with pytest.raises(MMError, match="pair_scores returned"):
        recall_at_k_reranked(img, txt, [0, 1], lambda i, t: torch.zeros(1), ks=(1,), k=2)


def test_model_level_reranking_on_a_tiny_random_blip_equals_the_dense_itm_reference():
    from mmcore.data.shapes import make_shapes
    from mmcore.encoders.blip import create_blip
    from mmcore.eval.rerank import ItmPairScorer, retrieval_eval_reranked
    from mmcore.eval.retrieval import encode_images, encode_texts, texts_and_owners

    torch.manual_seed(0)
    bundle = create_blip("mm-micro-blip")
    data = make_shapes(12, seed=1, image_size=bundle.image_size)
    recs = data.records
    out = retrieval_eval_reranked(bundle.model, bundle.tokenizer, recs, bundle.preprocess_eval, ks=(1, 5), k=3,
                                  batch_size=5)
    texts, owners, _ = texts_and_owners([r.captions for r in recs])
    img = encode_images(bundle.model, recs, bundle.preprocess_eval)
    txt = encode_texts(bundle.model, bundle.tokenizer, texts)
    scorer = ItmPairScorer(bundle.model, bundle.tokenizer, recs, bundle.preprocess_eval, texts, batch_size=5,
                           pair_batch_size=7)
    ii, tt = torch.meshgrid(torch.arange(len(recs)), torch.arange(len(texts)), indexing="ij")
    dense = scorer(ii.flatten(), tt.flatten()).view(len(recs), len(texts))
    # the scorer equals the ITM head on each pair alone
    with torch.no_grad():
        pix = bundle.preprocess_eval.batch(torch.from_numpy(np.stack([recs[3].image])).permute(0, 3, 1, 2))
        alone = bundle.model.itm_logits(bundle.model.image_embeds(pix), bundle.tokenizer([texts[5]]))[0, 1]
    assert dense[3, 5].item() == pytest.approx(alone.item(), abs=1e-5)
    want = reference_reranked((img @ txt.T).numpy(), dense.numpy(), [set(o) for o in owners], (1, 5), 3)
    for key in want:
        assert out[key] == pytest.approx(want[key]), key
    assert {"itc_i2t_R@1", "itc_t2i_R@5", "rerank_k", "itm_pairs", "n_images", "n_texts"} <= out.keys()
