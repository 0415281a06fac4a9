"""`mm clip pretrain --family blip`: pretrain a BLIP (ITC + ITM with hard negatives, :mod:`mmcore.blip_train`) on an
image–text dataset into a run directory; the same run as the CLIP's (:func:`mmcore.recipes.clip_pretrain.pretrain_image_text`).

Output directory of :func:`pretrain`::

    config.json         resolved BlipTrainConfig
    model/              the BLIP in transformers' format (BlipForImageTextRetrieval.from_pretrained(OUT/model),
                        BlipProcessor.from_pretrained(OUT/model); mmcore.encoders.blip.load_blip(OUT) reads it too)
    metrics.json        zero-shot accuracy (ITC) on the held-out split; retrieval Recall@K by ITC and re-ranked by
                        ITM over the top rerank_k (held-out, retrieval_n images); timings
    log.jsonl           training log (loss, itc_loss, itm_loss; the periodic zero-shot evaluations)
    checkpoint/         resumable state while running (kept with ``keep_checkpoints``)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.blip_train import BlipObjective, BlipTrainConfig
from mmcore.recipes.clip_pretrain import pretrain_image_text

MODEL_DIR = "model"  # the transformers folder inside the run directory (whose config.json is the run's config)


def retrieval_metrics(bundle: Any, test: Any, cfg: BlipTrainConfig, device: Any = "cpu") -> dict[str, Any]:
    """Held-out retrieval of ``bundle`` over the first ``cfg.retrieval_n`` test records: ITC recalls and the ITM
    re-ranked ones (``cfg.rerank_k``), keys ``retrieval_*``; {} when ``retrieval_n`` is 0."""
    if cfg.retrieval_n <= 0 or cfg.rerank_k <= 0:
        return {}
    from mmcore.eval.rerank import retrieval_eval_reranked

    recs = test.records[: cfg.retrieval_n]
    r = retrieval_eval_reranked(bundle.model, bundle.tokenizer, recs, bundle.preprocess_eval, ks=(1, 5, 10),
                                k=cfg.rerank_k, batch_size=500, device=device)
    return {f"retrieval_{k}": v for k, v in r.items()}


def pretrain(cfg: BlipTrainConfig, out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train a BLIP from ``cfg``; write OUT/model/ (transformers' format), config.json, metrics.json
    (``zero_shot_accuracy``, ``retrieval_*``, ``wall_seconds``) and log.jsonl."""
    from mmcore.encoders.blip import create_blip

    def final_eval(bundle: Any, test: Any) -> dict[str, Any]:
        return {"family": "blip", **retrieval_metrics(bundle, test, cfg, device=next(bundle.model.parameters()).device)}

    return pretrain_image_text(cfg, out_dir, create=lambda device: create_blip(cfg.model, cfg.pretrained, device=device),
                               save=lambda bundle, out: bundle.save(Path(out) / MODEL_DIR),
                               objective=lambda records: BlipObjective(records, cfg), final_eval=final_eval,
                               desc="pretrain BLIP", resume=resume, overwrite=overwrite)
