"""BLIP's image–text pretraining objectives, ITC + ITM with hard negatives, in mmcore's contrastive training loop:

    bundle = create_blip("mm-tiny-blip")
    cfg = BlipTrainConfig(steps=400)
    model = train_clip(bundle, records, cfg, run, objective=BlipObjective(records, cfg))

ITC is CLIP's loss (:func:`mmcore.clip_train.clip_loss` over features gathered from every process, identical
captions positives with ``multi_positive``); ITM is BLIP's: per image one negative text and per text one negative
image, sampled from the softmax of the batch's contrastive similarities (hard negatives) among the pairs whose text
is not one of the image's captions, then cross-entropy of the matching head over the positive pairs and the
negatives (:class:`mmcore.encoders.blip.BlipRetrieval`). Unlike BLIP there is no momentum encoder (no ITC
distillation) and no language-modelling loss (the retrieval model has no decoder). With several processes the
negatives come from each process's own shard (BLIP samples them from the gathered batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmcore.clip_train import ClipTrainConfig, StepBatch, clip_loss


@dataclass
class BlipTrainConfig(ClipTrainConfig):
    """:class:`~mmcore.clip_train.ClipTrainConfig` with BLIP's defaults and ITM settings (`mm clip pretrain
    --family blip`)."""

    model: str = "mm-tiny-blip"  # a project BLIP (random init), or a transformers folder / hub id to fine-tune
    # 1e-3 (the CLIP's) collapsed the post-LN BERT text tower: its [CLS] features stopped varying across captions
    # within 20 steps on a fixed batch, where 3e-4 fitted it
    lr: float = 5e-4
    steps: int = 1000
    itm_weight: float = 1.0  # loss = itc + itm_weight * itm
    rerank_k: int = 16  # held-out retrieval at the end: ITM re-ranks each query's ITC top k
    retrieval_n: int = 300  # images of the held-out split in that retrieval evaluation (0: none)


class BlipObjective:
    """ITC + ``itm_weight`` * ITM of one step (an :class:`mmcore.clip_train.Objective`). ``records``: the training
    records (a text is a positive of an image when it is one of the image's captions)."""

    def __init__(self, records: Sequence[Any], cfg: BlipTrainConfig):
        self.captions = [frozenset(r.captions) for r in records]
        self.itm_weight = float(cfg.itm_weight)
        self.multi_positive = bool(cfg.multi_positive)
        self.seed = int(cfg.seed)

    def positives(self, indices: Sequence[int], texts: Sequence[str]) -> Any:
        """[B, B] bool: text ``j`` is one of the captions of record ``indices[i]``."""
        import torch

        return torch.tensor([[t in self.captions[i] for t in texts] for i in indices], dtype=torch.bool)

    def __call__(self, model: Any, images: Any, tokens: Any, batch: StepBatch) -> tuple[Any, Any, dict[str, Any]]:
        import torch.nn.functional as F

        from mmcore.distributed import gather_with_grad

        positive = self.positives(batch.local(batch.indices), batch.local(batch.texts))
        seed = (self.seed * 1_000_003 + batch.step) * batch.world + batch.rank  # exact on resume
        img, txt, scale, itm_logits, itm_labels = model(images, tokens, itm_positive=positive, itm_seed=seed)
        itc = clip_loss(gather_with_grad(img).float(), gather_with_grad(txt).float(), scale.float(),
                        batch.texts if self.multi_positive else None)
        itm = F.cross_entropy(itm_logits.float(), itm_labels)
        return itc + self.itm_weight * itm, scale, {"itc_loss": itc.detach(), "itm_loss": itm.detach()}
