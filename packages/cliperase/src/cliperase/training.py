"""What every CLIPErase training pass shares: the unlearning loop (:mod:`cliperase.trainer`), SLUG's gradient
pass (:mod:`cliperase.slug`) and relearning (:mod:`cliperase.relearn`): the text paired with an image at a step
(:func:`pair_text`), the preprocessed images of a record list (:class:`ImageBank`), train mode with frozen
BatchNorm statistics (:func:`train_mode`)."""

from __future__ import annotations

import random
from typing import Any

import torch
from mmcore.data.loading import load_transformed
from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import MMError
from torch import nn

from cliperase.templates import Templates


class ImageBank:
    """Preprocessed image tensors of a record list, read and transformed on every call (the eval transform:
    the paper reports no augmentation for unlearning). Nothing is cached: at 224 px a preprocessed image is
    0.6 MB, so caching D_r grew to ~29 GB on CIFAR-100. The training loop reads through
    :class:`cliperase.trainer.StepImages` (DataLoader workers) instead; this serves the small callers (relearn
    batches, tests)."""

    def __init__(self, records: list[ImageTextRecord], transform: Any):
        self.records = records
        self.transform = transform

    def __call__(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([load_transformed(self.records[i], self.transform) for i in indices])


def train_mode(model: nn.Module, freeze_norm_stats: bool) -> nn.Module:
    """``model.train()``, with BatchNorm layers left in eval mode (running statistics used, not updated)
    when ``freeze_norm_stats``: see :attr:`cliperase.config.UnlearnConfig.freeze_norm_stats`."""
    model.train()
    if freeze_norm_stats:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


def pair_text(rec: ImageTextRecord, data: ImageTextData, mode: str, key: tuple[int, ...],
              templates: Templates | None = None) -> str:
    """The text paired with an image at one step: one of its captions, a class prompt (a template
    filled with its class name), or either ("mixed"); the choice depends only on ``key``.

    With ``templates`` (the run's :class:`~cliperase.templates.Templates`), class prompts come from the
    unlearning templates and captions equal to an evaluation prompt are never chosen; a record with no
    other caption gets a class prompt. Without, the dataset's templates and every caption."""
    rng = random.Random(hash(key))
    use_prompt = mode == "prompt" or (mode == "mixed" and rng.random() < 0.5)
    prompts = list(templates.unlearning) if templates is not None else data.templates
    can_prompt = rec.label is not None and bool(data.classnames) and bool(prompts)
    captions = rec.captions if templates is None else [c for c in rec.captions if templates.allowed(c)]
    if can_prompt and (use_prompt or not captions):
        assert data.classnames is not None and rec.label is not None
        return rng.choice(prompts).format(data.classnames[rec.label])
    if not captions:
        if rec.captions:
            raise MMError(f"record {rec.id!r} of {data.name!r}: every caption is an evaluation prompt and there is "
                          "no unlearning template to build a class prompt from; set unlearn_templates")
        raise MMError(f"record {rec.id!r} of {data.name!r} has no captions")
    return captions[rng.randrange(len(captions))]
