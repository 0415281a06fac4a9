"""Concept forgetting: a caption keyword that cuts across the classes (a colour, a position word), forgotten
with ``--forget-keyword`` (:mod:`cliperase.forget_sets`: D_f is every image one of whose captions names it).

Measured by :func:`cliperase.metrics.evaluate_split` on a keyword split (percentages):

- ``concept_caption_t2i_R@K`` / ``other_caption_t2i_R@K``: text→image Recall@K, in the run's one held-out
  gallery (:func:`cliperase.metrics.gallery_retrieval`), of the gallery captions that name the keyword and of
  those that do not;
- ``concept_accuracy`` / ``concept_other_accuracy``: zero-shot accuracy of the concept's attribute (on shapes:
  which colour, size or position the keyword is a value of) on the held-out images that show the concept and on
  those that do not, each value's prompts the captions naming it with every shape (``a red circle``, ``a photo of
  a red square``, ...: :func:`mmcore.data.shapes.attribute_prompts`). Forgetting "red" should lose the first
  and keep the second. These prompts are caption phrasings, so unlike the class accuracies' evaluation templates
  unlearning may have paired images with them. Datasets without such attributes (real captions) get the
  retrieval numbers only.

The diffusion evaluation detects colours with :class:`cliperase.diffusion.detector.ColorDetector`
(``detector="color"`` of :class:`cliperase.recipes.diffusion_eval.DiffusionEvalConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.eval.retrieval import encode_images, encode_texts
from mmcore.eval.zeroshot import zero_shot_from_features

from cliperase.forget_sets import keyword_words


def concept_attribute(records: Sequence[ImageTextRecord], keyword: str) -> tuple[str, list[str], list[str]] | None:
    """The record attribute the keyword's words are values of (shapes: ``color`` for "red"), all values of that
    attribute in ``records`` (first-seen order) and the keyword's; None when no attribute holds every word or
    the attribute has no prompts (:data:`mmcore.data.shapes.ATTRIBUTE_TEMPLATES`)."""
    from mmcore.data.shapes import ATTRIBUTE_TEMPLATES

    words = [w.lower() for w in keyword_words(keyword)]
    if not records or not records[0].attrs:
        return None
    for attr in ATTRIBUTE_TEMPLATES:
        values = list(dict.fromkeys(str(r.attrs[attr]) for r in records if attr in r.attrs))
        lower = {v.lower(): v for v in values}
        if values and all(w in lower for w in words):
            return attr, values, [lower[w] for w in words]
    return None


@torch.no_grad()
def concept_zero_shot(model, bundle, concept: ImageTextData, other: ImageTextData, attr: str, values: list[str],
                      batch_size: int = 256) -> dict[str, Any]:
    """Zero-shot accuracy (percent) of attribute ``attr`` among ``values`` on the ``concept`` images and on the
    ``other`` images (see the module doc); per value too, and the number of images of each."""
    from mmcore.data.shapes import attribute_prompts

    device = next(model.parameters()).device
    shapes = sorted({str(r.attrs["shape"]) for r in concept.records + other.records if "shape" in r.attrs})
    prompts = [attribute_prompts(attr, v, shapes) for v in values]
    emb = encode_texts(model, bundle.tokenizer, [p for ps in prompts for p in ps], batch_size=batch_size,
                       device=device)
    emb = emb.view(len(values), len(prompts[0]), -1).mean(1)
    weights = F.normalize(emb, dim=-1).T.contiguous()
    out: dict[str, Any] = {"attribute": attr, "values": values, "prompts_per_value": len(prompts[0])}
    for part, data in (("concept", concept), ("other", other)):
        if not len(data):
            out[f"{part}_accuracy"], out[f"{part}_n"] = None, 0
            continue
        feats = encode_images(model, data.records, bundle.preprocess_eval, batch_size=batch_size, device=device)
        labels = torch.tensor([values.index(str(r.attrs[attr])) for r in data.records])
        res = zero_shot_from_features(model, feats, labels, weights, values)
        out[f"{part}_accuracy"], out[f"{part}_n"] = 100.0 * res["accuracy"], res["n"]
        out[f"{part}_per_value"] = {v: 100.0 * a for v, a in res["per_class"].items()}
    return out


def caption_recalls(hits: dict[str, torch.Tensor], texts: list[str], keyword: str, ks: tuple[int, ...]) -> dict[str, Any]:
    """Text→image Recall@K (percent) of the gallery ``texts`` that name ``keyword`` (``concept``) and of the
    others (``other``), from the per-text hits of :func:`mmcore.eval.retrieval.retrieval_eval`."""
    from cliperase.forget_sets import keyword_pattern

    pat = keyword_pattern(keyword)
    named = torch.tensor([pat.search(t) is not None for t in texts], dtype=torch.bool,
                         device=hits[f"t2i_R@{ks[0]}"].device)
    out: dict[str, Any] = {}
    for part, sel in (("concept", named), ("other", ~named)):
        n = int(sel.sum())
        out[part] = {"n_texts": n, **{f"t2i_R@{k}": (100.0 * int(hits[f"t2i_R@{k}"][sel].sum()) / n if n else None)
                                      for k in ks}}
    return out
