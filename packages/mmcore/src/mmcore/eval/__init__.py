"""Evaluation: zero-shot classification (accuracy as fractions in [0, 1]) and image–text
retrieval Recall@K (percent, 0–100), batched under inference mode for any open_clip model."""

from mmcore.eval.retrieval import (
    encode_images,
    encode_texts,
    recall_at_k,
    recall_at_k_blocked,
    retrieval_eval,
)
from mmcore.eval.zeroshot import build_zero_shot_classifier, zero_shot_eval

__all__ = [
    "build_zero_shot_classifier",
    "encode_images",
    "encode_texts",
    "recall_at_k",
    "recall_at_k_blocked",
    "retrieval_eval",
    "zero_shot_eval",
]
