"""Zero-shot classification with prompt templates, for any open_clip-style model.

Each class is represented by the normalised mean of its prompts' text embeddings
("a photo of a {}" × class name, ...); an image is assigned the class whose embedding is most
similar. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mmcore.checkpoint import unwrap
from mmcore.data.records import ImageTextData
from mmcore.errors import MMError
from mmcore.eval.retrieval import encode_images, encode_texts


def build_zero_shot_classifier(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Class weights ``[D, C]``: per class, the normalised mean of its normalised template embeddings."""
    if not classnames:
        raise MMError("zero-shot classifier: no class names")
    if not templates:
        raise MMError("zero-shot classifier: no prompt templates")
    for t in templates:
        if "{}" not in t:
            raise MMError(f"zero-shot prompt template {t!r} has no '{{}}' placeholder for the class name")
    texts = [t.format(c) for c in classnames for t in templates]
    emb = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device)
    emb = emb.view(len(classnames), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1).T.contiguous()


def _logit_scale(model: Any) -> float:
    scale = getattr(unwrap(model), "logit_scale", None)
    if scale is None:
        return 100.0
    return float(torch.as_tensor(scale).float().exp().item())


def zero_shot_eval(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    data: ImageTextData,
    transform: Callable[[Any], torch.Tensor],
    *,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    accelerator: Any = None,
    return_predictions: bool = False,
    num_workers: int | None = None,
    desc: str | None = None,
) -> dict[str, Any]:
    """Zero-shot accuracy of ``model`` on the labelled records of ``data``.

    Returns ``{"accuracy": float in [0, 1], "per_class": {classname: accuracy in [0, 1]}, "n": int}``;
    ``per_class`` lists only classes that occur in ``data``. With ``return_predictions`` also
    ``"predictions"``, ``"labels"`` (LongTensor [n]) and ``"logits"`` ([n, C], scaled by the
    model's logit scale), on CPU. ``classnames``/``templates`` default to the data's.
    """
    classnames = list(classnames if classnames is not None else (data.classnames or []))
    if not classnames:
        raise MMError(f"dataset {data.name!r} has no class names; zero-shot evaluation needs them")
    templates = list(templates if templates is not None else data.templates)
    unlabelled = [r.id for r in data.records if r.label is None]
    if unlabelled:
        raise MMError(
            f"dataset {data.name!r}: {len(unlabelled)} records have no class label (first: {unlabelled[0]!r}); "
            "zero-shot classification needs labelled data"
        )
    bad = [r.id for r in data.records if not 0 <= int(r.label) < len(classnames)]  # type: ignore[arg-type]
    if bad:
        raise MMError(
            f"dataset {data.name!r}: record {bad[0]!r} has a label outside the {len(classnames)} classes"
        )
    if not data.records:
        raise MMError(f"dataset {data.name!r} is empty")

    dev = torch.device(accelerator.device if accelerator is not None else device)
    weights = build_zero_shot_classifier(
        model, tokenizer, classnames, templates, device=dev, batch_size=batch_size
    )
    feats = encode_images(
        model, data.records, transform, batch_size=batch_size, device=dev, accelerator=accelerator,
        num_workers=num_workers, desc=desc,
    )
    labels = torch.tensor([int(r.label) for r in data.records], dtype=torch.long)  # type: ignore[arg-type]
    return zero_shot_from_features(model, feats, labels, weights, classnames, return_predictions)


def zero_shot_from_features(
    model: Any, feats: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, classnames: Sequence[str],
    return_predictions: bool = False,
) -> dict[str, Any]:
    """:func:`zero_shot_eval` from image features already computed (e.g. over a stream), their labels
    and the classifier of :func:`build_zero_shot_classifier`."""
    logits = (_logit_scale(model) * feats @ weights.to(feats.device)).cpu()
    preds = logits.argmax(dim=1)
    labels = labels.cpu().long()
    if not len(labels):
        raise MMError("zero-shot evaluation: no images")
    correct = preds == labels

    per_class: dict[str, float] = {}
    for c, name in enumerate(classnames):
        sel = labels == c
        if sel.any():
            per_class[name] = int(correct[sel].sum()) / int(sel.sum())
    out: dict[str, Any] = {
        "accuracy": int(correct.sum()) / len(labels),
        "per_class": per_class,
        "n": len(labels),
    }
    if return_predictions:
        out.update(predictions=preds, labels=labels, logits=logits)
    return out
