"""Zero-shot accuracy and retrieval Recall@K over a stream of shards, in one pass over the images.

The images are read once from a :class:`~mmcore.data.wds.stream.ShardStream` (decoded and
transformed in its DataLoader workers); what is kept is each image's feature, label and caption,
so memory grows with n·d features and the captions, never with the images. Both metrics are then
computed from those features exactly as :func:`~mmcore.eval.zeroshot.zero_shot_eval` and
:func:`~mmcore.eval.retrieval.retrieval_eval` compute them from records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mmcore.errors import MMError
from mmcore.eval.retrieval import encode_image_batches, retrieval_from_features, texts_and_owners
from mmcore.eval.zeroshot import build_zero_shot_classifier, zero_shot_from_features


def stream_eval(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    stream: Any,
    transform: Callable[[Any], torch.Tensor],
    *,
    templates: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    ks: Sequence[int] = (1, 5, 10),
    unique_texts: bool = True,
    desc: str | None = None,
) -> dict[str, Any]:
    """``{"n", "skipped", "zero_shot_accuracy", "per_class" (when the stream has class names and every
    image a label), retrieval metrics (when there are captions), "eval_seconds" (this pass, without
    loading the model)}`` of ``model`` on ``stream``."""
    t0 = time.perf_counter()
    dev = torch.device(device)
    batches = stream.batches(transform, batch_size, num_workers=num_workers, pin_memory=dev.type == "cuda")
    feats, rest = encode_image_batches(model, batches, device=dev, desc=desc or f"encode images ({stream.split})")
    n = int(feats.shape[0])
    if n == 0:
        raise MMError(f"{stream.attrs.get('root', stream.name)} [{stream.split}]: no samples to evaluate"
                      + (f" ({stream.skipped} skipped)" if stream.skipped else ""))
    out: dict[str, Any] = {"n": n, "skipped": stream.skipped}
    labels = torch.tensor(rest.get("label", []), dtype=torch.long)
    if stream.classnames and len(labels) == n and bool((labels >= 0).all()):
        weights = build_zero_shot_classifier(model, tokenizer, stream.classnames,
                                             list(templates) if templates else stream.templates,
                                             device=dev, batch_size=batch_size)
        zs = zero_shot_from_features(model, feats, labels, weights, stream.classnames)
        out["zero_shot_accuracy"] = zs["accuracy"]
        out["per_class"] = zs["per_class"]
    captions = [[c] for c in rest.get("caption", [])]
    texts, owners, n_captions = texts_and_owners(captions, unique_texts)
    if texts:
        out.update(retrieval_from_features(model, tokenizer, feats, texts, owners, ks, batch_size=batch_size,
                                           device=dev))
        out["n_captions"] = n_captions
    out["eval_seconds"] = round(time.perf_counter() - t0, 3)
    return out


__all__ = ["stream_eval"]
