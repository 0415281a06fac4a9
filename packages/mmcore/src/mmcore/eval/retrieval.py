"""Image–text retrieval Recall@K in both directions, for any open_clip-style model.

The model needs ``encode_image(images)`` and ``encode_text(tokens)``; the tokenizer maps a list of
strings to a token tensor (open_clip's ``get_tokenizer``). Features are L2-normalised. Recalls
are percentages (0–100), computed exactly in blocks of images (:func:`recall_at_k_blocked`), so
memory grows with the features and one block of similarities, not with n_images × n_texts.
Identical caption strings are one text owned by all their images (``unique_texts``).

With an accelerate ``accelerator`` the images/texts are sharded across processes and the
features gathered back in the original order, so 2 processes give the same numbers as 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from mmcore.checkpoint import unwrap
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.distributed import progress_bar
from mmcore.errors import MMError


def _shard(n: int, accelerator: Any) -> tuple[list[int], int]:
    """This process's indices and the padded per-process count. The index list is padded with the
    last index to ``world * per`` and cut into contiguous slices, so concatenating every
    process's output in rank order and truncating to ``n`` restores the original order."""
    if accelerator is None or accelerator.num_processes == 1 or n == 0:
        return list(range(n)), n
    world, rank = accelerator.num_processes, accelerator.process_index
    per = -(-n // world)
    padded = list(range(n)) + [n - 1] * (world * per - n)
    return padded[rank * per : (rank + 1) * per], per


def _gather(x: torch.Tensor, n: int, accelerator: Any) -> torch.Tensor:
    if accelerator is None or accelerator.num_processes == 1:
        return x
    # Shards are padded to equal length by _shard, so the gather is exact; the padding is cut here.
    return accelerator.gather_for_metrics(x.contiguous())[:n]


def _device(device: str | torch.device, accelerator: Any) -> torch.device:
    return torch.device(accelerator.device if accelerator is not None else device)


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """model.eval() for the duration, then the previous mode back (evaluation inside a training
    loop must not leave the model in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def float_dtype(model: Any) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def encode_images(
    model: Any,
    records: Sequence[ImageTextRecord] | ImageTextData,
    transform: Callable[[Any], torch.Tensor],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    accelerator: Any = None,
    num_workers: int | None = None,
    desc: str | None = None,
) -> torch.Tensor:
    """L2-normalised image features ``[len(records), D]`` (float32, on ``device``), in record order.

    Images are decoded and transformed in ``num_workers`` DataLoader workers (None:
    :func:`~mmcore.data.loading.resolve_workers`, from the CPU count; 0: in this process), pinned
    when the features go to a GPU; no image is kept after its batch. ``desc`` labels the progress bar."""
    with torch.inference_mode(), eval_mode(model):
        out = _encode_images(model, records, transform, batch_size, device, accelerator, num_workers, desc)
    return out.clone()  # a normal tensor: inference tensors cannot enter autograd later


def _encode_images(
    model: Any,
    records: Any,
    transform: Callable[[Any], torch.Tensor],
    batch_size: int,
    device: Any,
    accelerator: Any,
    num_workers: int | None,
    desc: str | None,
) -> torch.Tensor:
    from mmcore.data.loading import image_batches

    recs = records.records if isinstance(records, ImageTextData) else list(records)
    if batch_size < 1:
        raise MMError(f"batch_size must be at least 1, got {batch_size}")
    m = unwrap(model)
    dev = _device(device, accelerator)
    dtype = float_dtype(m)
    mine, _ = _shard(len(recs), accelerator)
    plan = [mine[s : s + batch_size] for s in range(0, len(mine), batch_size)]
    feats: list[torch.Tensor] = []
    with progress_bar(len(mine), desc or "encode images") as advance:
        for images in image_batches(recs, transform, plan, num_workers=num_workers, pin_memory=dev.type == "cuda"):
            images = images.to(dev, dtype, non_blocking=True)
            feats.append(F.normalize(m.encode_image(images).float(), dim=-1))
            advance(images.shape[0])
    out = torch.cat(feats) if feats else torch.empty(0, 0, device=dev)
    return _gather(out, len(recs), accelerator)


def encode_image_batches(
    model: Any,
    batches: Any,
    *,
    device: str | torch.device = "cpu",
    total: int | None = None,
    desc: str | None = None,
) -> tuple[torch.Tensor, dict[str, list[Any]]]:
    """L2-normalised features of a stream of batches ``{"image": [B,3,H,W], ...}`` (e.g.
    :meth:`~mmcore.data.wds.stream.ShardStream.batches`), and every other key's values concatenated in
    stream order (captions, labels, ids). Holds the features and those values, no image."""
    dev = torch.device(device)
    feats: list[torch.Tensor] = []
    rest: dict[str, list[Any]] = {}
    with torch.inference_mode(), eval_mode(model), progress_bar(total, desc or "encode images") as advance:
        m = unwrap(model)
        dtype = float_dtype(m)
        for batch in batches:
            images = batch["image"].to(dev, dtype, non_blocking=True)
            feats.append(F.normalize(m.encode_image(images).float(), dim=-1))
            for k, v in batch.items():
                if k != "image":
                    rest.setdefault(k, []).extend(v.tolist() if isinstance(v, torch.Tensor) else list(v))
            advance(images.shape[0])
    out = torch.cat(feats) if feats else torch.empty(0, 0, device=dev)
    return out.clone(), rest


def encode_texts(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    accelerator: Any = None,
) -> torch.Tensor:
    """L2-normalised text features ``[len(texts), D]`` (float32, on ``device``), in input order.

    Each distinct string is encoded once: caption sets often repeat texts (templated captions,
    several images sharing a caption), and text encoding dominates retrieval time."""
    texts = list(texts)
    unique = list(dict.fromkeys(texts))
    with torch.inference_mode(), eval_mode(model):
        out = _encode_texts(model, tokenizer, unique, batch_size, device, accelerator)
        if len(unique) != len(texts):
            pos = {t: i for i, t in enumerate(unique)}
            out = out[torch.tensor([pos[t] for t in texts], device=out.device)]
    return out.clone()


def _encode_texts(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: list[str],
    batch_size: int,
    device: Any,
    accelerator: Any,
) -> torch.Tensor:
    m = unwrap(model)
    dev = _device(device, accelerator)
    mine, _ = _shard(len(texts), accelerator)
    feats: list[torch.Tensor] = []
    for start in range(0, len(mine), batch_size):
        tokens = tokenizer([texts[i] for i in mine[start : start + batch_size]]).to(dev)
        feats.append(F.normalize(m.encode_text(tokens).float(), dim=-1))
    out = torch.cat(feats) if feats else torch.empty(0, 0, device=dev)
    return _gather(out, len(texts), accelerator)


def recall_at_k(
    sim: torch.Tensor, text_to_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K in percent from a dense similarity matrix ``sim`` [n_images, n_texts] (the reference
    :func:`recall_at_k_blocked` is tested against; it holds [n_images, n_texts] floats and bools, so
    large galleries go through :func:`recall_at_k_blocked` instead).

    ``text_to_image[j]`` is the image that caption ``j`` belongs to. Image→text: a hit when ANY of
    the image's captions is among the top K texts. Text→image: a hit when the caption's own image is
    among the top K images. Ties count against the query (a competitor scoring equal to the best
    match outranks it), so a constant model scores chance level, never 100%. Images without
    captions are left out of image→text.
    """
    sim = sim.float()
    n_img, n_txt = sim.shape
    t2i = torch.as_tensor(text_to_image, dtype=torch.long, device=sim.device)
    if t2i.shape != (n_txt,):
        raise MMError(f"text_to_image has shape {tuple(t2i.shape)}, expected ({n_txt},)")
    if n_txt and (int(t2i.min()) < 0 or int(t2i.max()) >= n_img):
        raise MMError("text_to_image holds an image index outside the similarity matrix")
    match = torch.zeros(n_img, n_txt, dtype=torch.bool, device=sim.device)
    match[t2i, torch.arange(n_txt, device=sim.device)] = True

    # Image→text rank: how many non-matching texts score >= the image's best-matching caption.
    best = sim.masked_fill(~match, float("-inf")).amax(dim=1, keepdim=True)
    i2t_rank = ((sim >= best) & ~match).sum(dim=1)
    has_caption = match.any(dim=1)
    # Text→image rank: how many other images score >= the caption's own image.
    own = sim.gather(0, t2i[None, :])  # [1, n_txt]
    t2i_rank = ((sim >= own) & ~match).sum(dim=0)
    return _recalls(i2t_rank[has_caption], t2i_rank, ks)


def owner_pairs(
    text_owners: Any, n_img: int, n_txt: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, text) index pairs of ``text_owners`` (one image index per text, or a sequence of image
    indices per text), duplicates removed, sorted by image."""
    if isinstance(text_owners, torch.Tensor) or (
        len(text_owners) and not isinstance(text_owners[0], Sequence | torch.Tensor)
    ):
        img = torch.as_tensor(text_owners, dtype=torch.long).reshape(-1)
        if img.numel() != n_txt:
            raise MMError(f"text_owners has {img.numel()} entries, expected one per text ({n_txt})")
        txt = torch.arange(n_txt)
    else:
        if len(text_owners) != n_txt:
            raise MMError(f"text_owners has {len(text_owners)} entries, expected one per text ({n_txt})")
        if any(len(o) == 0 for o in text_owners):
            raise MMError("text_owners: every text needs at least one image that owns it")
        img = torch.tensor([int(i) for o in text_owners for i in o], dtype=torch.long)
        txt = torch.tensor([j for j, o in enumerate(text_owners) for _ in o], dtype=torch.long)
    if img.numel() and (int(img.min()) < 0 or int(img.max()) >= n_img):
        raise MMError("text_owners holds an image index outside the image features")
    key = torch.unique(img * max(n_txt, 1) + txt)  # sorted by image, then text
    return (key // max(n_txt, 1)).to(device), (key % max(n_txt, 1)).to(device)


def recall_at_k_blocked(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_owners: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    block_size: int = 1024,
    return_hits: bool = False,
) -> Any:
    """Exact Recall@K in percent, both directions, without an [n_images, n_texts] matrix.

    Similarities are ``image_features @ text_features.T``, computed for ``block_size`` images at a
    time. ``text_owners[j]`` is the image owning text ``j``, or a sequence of the images owning it
    (one text shared by several images, e.g. a class prompt). Image→text: a hit when ANY text the
    image owns is among the top K texts; text→image: a hit when ANY image owning the text is among
    the top K images. Ties count against the query, as in :func:`recall_at_k`: a competitor scoring
    equal to the query's best match ranks above it. Images owning no text are left out of image→text.

    Image→text ranks come from each image block's own row of similarities. Text→image keeps, per
    text, the ``max(ks)`` highest scores of images NOT owning it, merged block by block with topk
    (those scores are all that decides whether the rank is below K; index order among ties does not
    matter), and the best score of an owning image. Memory: the features, a [block_size, n_texts]
    block and a [max(ks), n_texts] running top list. With one owner per text the numbers equal
    :func:`recall_at_k` on the dense matrix computed the same way.

    ``return_hits=True`` returns ``(recalls, hits)``: ``hits["i2t_R@K"]`` a bool tensor [n_images] (False for
    an image owning no text), ``hits["t2i_R@K"]`` a bool tensor [n_texts], and ``hits["has_text"]`` [n_images],
    so recalls over a subset of the queries (e.g. the forget images of a larger gallery) can be taken.
    """
    img, txt = image_features.float(), text_features.float().to(image_features.device)
    n_img, n_txt = img.shape[0], txt.shape[0]
    dev = img.device
    if block_size < 1:
        raise MMError(f"block_size must be at least 1, got {block_size}")
    pair_img, pair_txt = owner_pairs(text_owners, n_img, n_txt, dev)
    kmax = max(1, min(max(ks, default=1), n_img))
    neg_inf = float("-inf")
    i2t_rank = torch.zeros(n_img, dtype=torch.long, device=dev)
    has_text = torch.zeros(n_img, dtype=torch.bool, device=dev)
    own_best = torch.full((n_txt,), neg_inf, device=dev)  # best score of an image owning each text
    others_top = torch.full((0, n_txt), neg_inf, device=dev)  # top scores of images not owning it
    bounds = torch.searchsorted(pair_img, torch.arange(0, n_img + block_size, block_size, device=dev))
    for b, start in enumerate(range(0, n_img, block_size)):
        sim = img[start : start + block_size] @ txt.T  # [b, n_txt]
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        pi, pt = pair_img[lo:hi] - start, pair_txt[lo:hi]
        owned = sim[pi, pt]
        # image -> text: texts scoring >= the image's best owned text, minus the owned ones among them
        best = torch.full((sim.shape[0],), neg_inf, device=dev).scatter_reduce(0, pi, owned, "amax")
        owned_ge = torch.zeros(sim.shape[0], dtype=torch.long, device=dev).scatter_add(
            0, pi, (owned >= best[pi]).long()
        )
        i2t_rank[start : start + sim.shape[0]] = (sim >= best[:, None]).sum(1) - owned_ge
        has_text[start : start + sim.shape[0]] = torch.bincount(pi, minlength=sim.shape[0]) > 0
        # text -> image: the owners' best score, and the running top scores of the other images
        own_best.scatter_reduce_(0, pt, owned, "amax")
        sim[pi, pt] = neg_inf
        merged = torch.cat([others_top, sim])
        others_top = merged.topk(min(kmax, merged.shape[0]), dim=0).values
    t2i_rank = (others_top >= own_best[None, :]).sum(0)
    recalls = _recalls(i2t_rank[has_text], t2i_rank, ks)
    if not return_hits:
        return recalls
    hits = {f"i2t_R@{k}": (i2t_rank < k) & has_text for k in ks}
    hits.update({f"t2i_R@{k}": t2i_rank < k for k in ks})
    hits["has_text"] = has_text
    return recalls, hits


def _recalls(i2t_rank: torch.Tensor, t2i_rank: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """``i2t_R@K`` then ``t2i_R@K`` (percent) from 0-based ranks of the first correct match."""
    out = {f"i2t_R@{k}": percent(i2t_rank < k) for k in ks}
    out.update({f"t2i_R@{k}": percent(t2i_rank < k) for k in ks})
    return out


def percent(hits: torch.Tensor) -> float:
    return 100.0 * int(hits.sum()) / hits.numel() if hits.numel() else 0.0


def retrieval_eval(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    records: Sequence[ImageTextRecord] | ImageTextData,
    transform: Callable[[Any], torch.Tensor],
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    accelerator: Any = None,
    *,
    unique_texts: bool = True,
    block_size: int = 1024,
    return_hits: bool = False,
    num_workers: int | None = None,
    desc: str | None = None,
) -> dict[str, Any]:
    """Recall@K (percent) both ways over ``records`` using every caption of every record, plus
    ``n_images``, ``n_texts`` (texts ranked) and ``n_captions`` (captions of all records).

    ``unique_texts=True``: identical caption strings are ONE text owned by every image that has it
    (a class prompt such as "a photo of a cat" shared by many images): an image is a hit when any
    of its texts is in the top K, a text when any image owning it is. A perfect model therefore
    scores 100 both ways on class-caption data. ``unique_texts=False``: every caption is its own
    text owned by its one image, clip_benchmark's definition (which differs only on exact score
    ties: it lets torch.topk break them, here ties count against the query). Computed in blocks of
    ``block_size`` images (:func:`recall_at_k_blocked`): no [n_images, n_texts] matrix.

    ``return_hits=True`` adds ``"hits"`` (per-query hits, see :func:`recall_at_k_blocked`) and
    ``"text_owners"`` (for each ranked text, the indices of the records owning it)."""
    recs = records.records if isinstance(records, ImageTextData) else list(records)
    if not recs:
        raise MMError("retrieval_eval: no records to evaluate")
    texts, owners, n_captions = texts_and_owners([r.captions for r in recs], unique_texts)
    if not texts:
        raise MMError("retrieval_eval: the records have no captions")
    img = encode_images(model, recs, transform, batch_size=batch_size, device=device, accelerator=accelerator,
                        num_workers=num_workers, desc=desc)
    out = retrieval_from_features(model, tokenizer, img, texts, owners, ks, batch_size=batch_size, device=device,
                                  accelerator=accelerator, block_size=block_size, return_hits=return_hits)
    out["n_captions"] = n_captions
    return out


def texts_and_owners(captions: Sequence[Sequence[str]], unique_texts: bool = True) -> tuple[list[str], list[list[int]], int]:
    """The texts to rank, for each the indices of the images owning it, and the caption count, from
    each image's captions (see :func:`retrieval_eval` for ``unique_texts``)."""
    texts: list[str] = []
    owners: list[list[int]] = []
    index: dict[str, int] = {}
    n_captions = 0
    for i, caps in enumerate(captions):
        n_captions += len(caps)
        for c in caps:
            j = index.setdefault(c, len(texts)) if unique_texts else len(texts)
            if j == len(texts):
                texts.append(c)
                owners.append([])
            if not owners[j] or owners[j][-1] != i:  # images come in order: a repeat is the last owner
                owners[j].append(i)
    return texts, owners, n_captions


def retrieval_from_features(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    image_features: torch.Tensor,
    texts: list[str],
    owners: list[list[int]],
    ks: Sequence[int] = (1, 5, 10),
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    accelerator: Any = None,
    block_size: int = 1024,
    return_hits: bool = False,
) -> dict[str, Any]:
    """:func:`retrieval_eval` from image features already computed (e.g. over a stream) and the
    texts with their owners (:func:`texts_and_owners`)."""
    if not texts:
        raise MMError("retrieval_eval: the records have no captions")
    txt = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device, accelerator=accelerator)
    res = recall_at_k_blocked(image_features, txt, owners, ks, block_size=block_size, return_hits=return_hits)
    out: dict[str, Any] = dict(res[0] if return_hits else res)
    if return_hits:
        out["hits"] = res[1]
        out["text_owners"] = owners
    out["n_images"] = int(image_features.shape[0])
    out["n_texts"] = len(texts)
    return out
