"""Retrieval as BLIP evaluates it: rank by the contrastive (ITC) similarity, then re-rank each query's top ``k``
candidates by the image–text matching (ITM) head.

For a query (an image for image→text, a text for text→image) the candidates are the ``k`` gallery items with the
highest ITC score; at equal scores the query's own items go last (ties count against the query, as in
:func:`~mmcore.eval.retrieval.recall_at_k_blocked`) and the others keep index order. Each candidate gets BLIP's
re-ranking score ``itm + itc`` (the ITM "match" logit plus the cosine similarity: BLIP's ``score + topk_sim``); the
candidates come first in that order, then every other item in ITC order. Recall@K is then computed as everywhere
in :mod:`mmcore.eval` (percent; an image owning no text left out of image→text; a competitor scoring equal to the
best own item ranks above it).

So a query whose first own item is not among its ITC top ``k`` keeps its ITC rank (>= k), and for K >= k the
re-ranked Recall@K equals the ITC one: only the queries with an ITC hit at ``k`` are re-ranked, and only their
candidates go through the ITM head (``k * n_queries`` pairs at most, scored in image blocks: memory holds the
features, one block of images' vision tokens and the candidate lists, never an [n_images, n_texts] matrix).
Single process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mmcore.checkpoint import unwrap
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import MMError
from mmcore.eval.retrieval import (
    encode_images,
    encode_texts,
    eval_mode,
    float_dtype,
    owner_pairs,
    percent,
    recall_at_k_blocked,
    texts_and_owners,
)

PairScores = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (image idx [P], text idx [P]) -> ITM score [P]


def _candidates(queries: torch.Tensor, gallery: torch.Tensor, q_of_pair: torch.Tensor, g_of_pair: torch.Tensor,
                selected: torch.Tensor, k: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each selected query: its ``k`` ITC candidates (gallery indices [S, k]), whether each is the query's own
    ([S, k] bool) and its ITC score ([S, k]), ordered by score with own items last among equals."""
    n_gal = gallery.shape[0]
    cand, own, score = [], [], []
    local = torch.full((queries.shape[0],), -1, dtype=torch.long, device=queries.device)
    for start in range(0, selected.numel(), block_size):
        block = selected[start : start + block_size]
        sim = queries[block] @ gallery.T  # [b, n_gal]
        local[block] = torch.arange(block.numel(), device=queries.device)
        keep = local[q_of_pair] >= 0
        owned = torch.zeros(sim.shape, dtype=torch.bool, device=sim.device)
        owned[local[q_of_pair[keep]], g_of_pair[keep]] = True
        local[block] = -1
        # own items last among equal scores: a stable sort by "owned", then a stable sort by score
        by_owned = torch.sort(owned.to(torch.uint8), dim=1, stable=True).indices
        order = torch.sort(sim.gather(1, by_owned), dim=1, descending=True, stable=True).indices[:, : min(k, n_gal)]
        top = by_owned.gather(1, order)
        cand.append(top)
        own.append(owned.gather(1, top))
        score.append(sim.gather(1, top))
    if not cand:
        empty = torch.empty(0, min(k, n_gal), device=queries.device)
        return empty.long(), empty.bool(), empty
    return torch.cat(cand), torch.cat(own), torch.cat(score)


def _reranked_ranks(itm: torch.Tensor, own: torch.Tensor, itc: torch.Tensor) -> torch.Tensor:
    """0-based rank of each query's first own candidate under ``itm + itc`` (ties against the query)."""
    s = itm.float() + itc.float()
    best = s.masked_fill(~own, float("-inf")).amax(dim=1, keepdim=True)
    return ((s >= best) & ~own).sum(dim=1)


def recall_at_k_reranked(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_owners: Any,
    pair_scores: PairScores,
    ks: Sequence[int] = (1, 5, 10),
    *,
    k: int = 16,
    block_size: int = 1024,
    return_hits: bool = False,
) -> Any:
    """Recall@K in percent, both directions, ranked by ITC (``image_features @ text_features.T``) and re-ranked by
    ``pair_scores(image_idx, text_idx)`` (the ITM score of those pairs) over each query's top ``k`` (see the
    module docstring). ``text_owners`` as in :func:`~mmcore.eval.retrieval.recall_at_k_blocked`.

    Returns the recalls plus ``"itm_pairs"`` (pairs scored); ``return_hits=True`` returns ``(recalls, hits)``
    with the per-query hits of :func:`~mmcore.eval.retrieval.recall_at_k_blocked` after re-ranking."""
    if k < 1:
        raise MMError(f"the re-ranking k must be at least 1, got {k}")
    img, txt = image_features.float(), text_features.float().to(image_features.device)
    n_img, n_txt = img.shape[0], txt.shape[0]
    k_i2t, k_t2i = min(k, n_txt), min(k, n_img)
    ks = list(ks)
    _, itc_hits = recall_at_k_blocked(img, txt, text_owners, sorted({*ks, k_i2t, k_t2i}), block_size=block_size,
                                      return_hits=True)
    pair_img, pair_txt = owner_pairs(text_owners, n_img, n_txt, img.device)
    sel_i = torch.nonzero(itc_hits[f"i2t_R@{k_i2t}"]).flatten()  # an own text among the ITC top k
    sel_t = torch.nonzero(itc_hits[f"t2i_R@{k_t2i}"]).flatten()
    cand_i, own_i, itc_i = _candidates(img, txt, pair_img, pair_txt, sel_i, k, block_size)
    cand_t, own_t, itc_t = _candidates(txt, img, pair_txt, pair_img, sel_t, k, block_size)
    # score every (image, text) candidate pair once: both directions share many
    pi = torch.cat([sel_i.repeat_interleave(cand_i.shape[1]), cand_t.flatten()])
    pt = torch.cat([cand_i.flatten(), sel_t.repeat_interleave(cand_t.shape[1])])
    key = pi * max(n_txt, 1) + pt
    uniq, inverse = torch.unique(key, return_inverse=True)
    scores = pair_scores(uniq // max(n_txt, 1), uniq % max(n_txt, 1)).to(img.device).float() if uniq.numel() else \
        torch.empty(0, device=img.device)
    if scores.shape != uniq.shape:
        raise MMError(f"pair_scores returned shape {tuple(scores.shape)} for {uniq.numel()} pairs")
    per_pair = scores[inverse]
    n_i = sel_i.numel() * cand_i.shape[1]
    rank_i = _reranked_ranks(per_pair[:n_i].view(cand_i.shape), own_i, itc_i)
    rank_t = _reranked_ranks(per_pair[n_i:].view(cand_t.shape), own_t, itc_t)

    has_text = itc_hits["has_text"]
    hits: dict[str, torch.Tensor] = {}
    for direction, sel, rank in (("i2t", sel_i, rank_i), ("t2i", sel_t, rank_t)):
        for kk in ks:
            h = itc_hits[f"{direction}_R@{kk}"].clone()  # a query not re-ranked keeps its ITC rank
            h[sel] = rank < kk
            hits[f"{direction}_R@{kk}"] = h
    recalls: dict[str, Any] = {f"i2t_R@{kk}": percent(hits[f"i2t_R@{kk}"][has_text]) for kk in ks}
    recalls.update({f"t2i_R@{kk}": percent(hits[f"t2i_R@{kk}"]) for kk in ks})
    recalls["itm_pairs"] = int(uniq.numel())
    if not return_hits:
        return recalls
    hits["has_text"] = has_text
    return recalls, hits


class ItmPairScorer:
    """:data:`PairScores` from a model with an ITM head (``image_embeds(images)``, ``itm_logits(embeds, tokens)``,
    e.g. :class:`mmcore.encoders.blip.BlipRetrieval`): the "match" logit of (``records[i]``, ``texts[j]``) pairs,
    images decoded and encoded ``batch_size`` at a time, pairs through the head ``pair_batch_size`` at a time."""

    def __init__(self, model: Any, tokenizer: Callable[[list[str]], torch.Tensor],
                 records: Sequence[ImageTextRecord], transform: Callable[[Any], torch.Tensor], texts: Sequence[str], *,
                 batch_size: int = 256, pair_batch_size: int = 256, device: str | torch.device = "cpu",
                 num_workers: int | None = None):
        self.model, self.tokenizer, self.records, self.transform = model, tokenizer, list(records), transform
        self.texts = list(texts)
        self.batch_size, self.pair_batch_size = int(batch_size), int(pair_batch_size)
        self.device, self.num_workers = torch.device(device), num_workers

    def __call__(self, image_idx: torch.Tensor, text_idx: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), eval_mode(self.model):
            out = self._score(image_idx.cpu().long(), text_idx.cpu().long())
        return out.clone()

    def _score(self, image_idx: torch.Tensor, text_idx: torch.Tensor) -> torch.Tensor:
        from mmcore.data.loading import image_batches

        m = unwrap(self.model)
        dtype = float_dtype(m)
        out = torch.empty(image_idx.numel())
        needed = torch.unique(text_idx)
        row = torch.full((len(self.texts),), -1, dtype=torch.long)
        row[needed] = torch.arange(needed.numel())
        tokens = torch.cat([self.tokenizer([self.texts[int(j)] for j in needed[s : s + 4096]])
                            for s in range(0, needed.numel(), 4096)]) if needed.numel() else None
        images = torch.unique(image_idx)
        plan = [images[s : s + self.batch_size].tolist() for s in range(0, images.numel(), self.batch_size)]
        order = torch.argsort(image_idx, stable=True)
        bounds = torch.searchsorted(image_idx[order], torch.tensor([b[0] for b in plan] + [int(images[-1]) + 1]))
        batches = image_batches(self.records, self.transform, plan, num_workers=self.num_workers,
                                pin_memory=self.device.type == "cuda")
        for b, pixels in enumerate(batches):
            embeds = m.image_embeds(pixels.to(self.device, dtype, non_blocking=True))
            block = torch.tensor(plan[b])
            pairs = order[int(bounds[b]) : int(bounds[b + 1])]  # the pairs of this block's images
            for s in range(0, pairs.numel(), self.pair_batch_size):
                p = pairs[s : s + self.pair_batch_size]
                local = torch.searchsorted(block, image_idx[p])  # the image's row in this block
                toks = tokens[row[text_idx[p]]].to(self.device)
                out[p] = m.itm_logits(embeds[local.to(self.device)], toks)[:, 1].float().cpu()
        return out


def retrieval_eval_reranked(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    records: Sequence[ImageTextRecord] | ImageTextData,
    transform: Callable[[Any], torch.Tensor],
    ks: Sequence[int] = (1, 5, 10),
    *,
    k: int = 16,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    unique_texts: bool = True,
    block_size: int = 1024,
    num_workers: int | None = None,
    desc: str | None = None,
) -> dict[str, Any]:
    """:func:`~mmcore.eval.retrieval.retrieval_eval` (texts, owners and ``unique_texts`` alike) with the ITM
    re-ranking of the top ``k`` (:func:`recall_at_k_reranked`): the re-ranked ``i2t_R@K`` / ``t2i_R@K`` (percent),
    the ITC-only recalls as ``itc_i2t_R@K`` / ``itc_t2i_R@K``, ``rerank_k``, ``itm_pairs``, ``n_images``,
    ``n_texts`` and ``n_captions``. ``model`` needs the ITM head of :class:`ItmPairScorer`."""
    recs = records.records if isinstance(records, ImageTextData) else list(records)
    if not recs:
        raise MMError("retrieval_eval_reranked: no records to evaluate")
    texts, owners, n_captions = texts_and_owners([r.captions for r in recs], unique_texts)
    if not texts:
        raise MMError("retrieval_eval_reranked: the records have no captions")
    img = encode_images(model, recs, transform, batch_size=batch_size, device=device, num_workers=num_workers,
                        desc=desc)
    txt = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device)
    itc = recall_at_k_blocked(img, txt, owners, ks, block_size=block_size)
    scorer = ItmPairScorer(model, tokenizer, recs, transform, texts, batch_size=batch_size, device=device,
                           num_workers=num_workers)
    out: dict[str, Any] = recall_at_k_reranked(img, txt, owners, scorer, ks, k=k, block_size=block_size)
    out.update({f"itc_{key}": v for key, v in itc.items()})
    out.update(rerank_k=int(k), n_images=len(recs), n_texts=len(texts), n_captions=n_captions)
    return out
