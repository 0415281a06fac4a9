"""Image–text retrieval Recall@K in both directions, for any open_clip-style model.

The model needs ``encode_image(images)`` and ``encode_text(tokens)``; the tokenizer maps a list of
strings to a token tensor (open_clip's ``get_tokenizer``). Features are L2-normalised. Recalls
are percentages (0–100).

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
def _eval_mode(model: Any) -> Iterator[None]:
    """model.eval() for the duration, then the previous mode back (evaluation inside a training
    loop must not leave the model in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _float_dtype(model: Any) -> torch.dtype:
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
) -> torch.Tensor:
    """L2-normalised image features ``[len(records), D]`` (float32, on ``device``), in record order."""
    with torch.inference_mode(), _eval_mode(model):
        out = _encode_images(model, records, transform, batch_size, device, accelerator)
    return out.clone()  # a normal tensor: inference tensors cannot enter autograd later


def _encode_images(
    model: Any,
    records: Any,
    transform: Callable[[Any], torch.Tensor],
    batch_size: int,
    device: Any,
    accelerator: Any,
) -> torch.Tensor:
    recs = records.records if isinstance(records, ImageTextData) else list(records)
    m = unwrap(model)
    dev = _device(device, accelerator)
    dtype = _float_dtype(m)
    mine, _ = _shard(len(recs), accelerator)
    feats: list[torch.Tensor] = []
    with progress_bar(len(mine), "encode images") as advance:
        for start in range(0, len(mine), batch_size):
            idx = mine[start : start + batch_size]
            images = torch.stack([transform(recs[i].load_image()) for i in idx]).to(dev, dtype)
            feats.append(F.normalize(m.encode_image(images).float(), dim=-1))
            advance(len(idx))
    out = torch.cat(feats) if feats else torch.empty(0, 0, device=dev)
    return _gather(out, len(recs), accelerator)


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
    with torch.inference_mode(), _eval_mode(model):
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
    """Recall@K in percent from a similarity matrix ``sim`` [n_images, n_texts].

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

    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = _percent(i2t_rank[has_caption] < k)
    for k in ks:
        out[f"t2i_R@{k}"] = _percent(t2i_rank < k)
    return out


def _percent(hits: torch.Tensor) -> float:
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
) -> dict[str, float | int]:
    """Recall@K (percent) both ways over ``records`` using every caption of every record, plus
    ``n_images`` and ``n_texts``."""
    recs = records.records if isinstance(records, ImageTextData) else list(records)
    if not recs:
        raise MMError("retrieval_eval: no records to evaluate")
    texts: list[str] = []
    owner: list[int] = []
    for i, r in enumerate(recs):
        texts.extend(r.captions)
        owner.extend([i] * len(r.captions))
    if not texts:
        raise MMError("retrieval_eval: the records have no captions")
    img = encode_images(model, recs, transform, batch_size=batch_size, device=device, accelerator=accelerator)
    txt = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device, accelerator=accelerator)
    sim = img @ txt.T
    out: dict[str, float | int] = dict(recall_at_k(sim, torch.tensor(owner, device=sim.device), ks))
    out["n_images"] = len(recs)
    out["n_texts"] = len(texts)
    return out
