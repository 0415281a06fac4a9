"""`mm clip eval`: zero-shot accuracy and retrieval Recall@K of a saved CLIP or a named model.

    cfg = ClipEvalConfig(model="runs/clip", dataset="cifar100", data_root="~/data")
    metrics = evaluate_clip_config(cfg)          # zero-shot accuracy and retrieval Recall@K
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ClipEvalConfig:
    model: str | None = None  # saved model dir or open_clip name; None: the CLI's default (the cached tiny CLIP)
    pretrained: str | None = None  # open_clip pretrained tag or local checkpoint (with a model name)
    dataset: str = "shapes"  # shapes | cifar100 | flickr30k | cc12m | wds
    data_root: str | None = None
    split: str = "test"
    n: int | None = None  # shapes: images generated (None: 1000); real data: at most n records (None: all)
    seed: int = 0  # seed of the synthetic data
    shapes_classes: str = "shape"  # shapes: "shape" (10 classes) | "shape_color" (100, "red circle", ...)
    batch_size: int = 256
    skip_bad: bool = False  # skip (and count) unreadable images and malformed annotation lines
    caption_file: str = "auto"  # flickr30k: auto | karpathy | csv
    # image decoding workers (DataLoader); None: from the CPU count or MM_NUM_WORKERS, 0: this process
    num_workers: int | None = None


def evaluate_clip_config(cfg: ClipEvalConfig) -> dict[str, Any]:
    """:func:`evaluate_clip` on ``cfg`` (``cfg.model`` must be set)."""
    from mmcore.errors import ConfigError

    if cfg.model is None:
        raise ConfigError("ClipEvalConfig.model is not set: name a saved model dir or an open_clip model")
    return evaluate_clip(cfg.model, cfg.pretrained, cfg.dataset, data_root=cfg.data_root, split=cfg.split, n=cfg.n,
                         seed=cfg.seed, batch_size=cfg.batch_size, skip_bad=cfg.skip_bad, caption_file=cfg.caption_file,
                         num_workers=cfg.num_workers, shapes_classes=cfg.shapes_classes)


#: ``evaluate_clip`` on synthetic shapes: images generated when ``n`` is not given.
SHAPES_EVAL_N = 1000


def evaluate_clip(
    model: str | Path,
    pretrained: str | None,
    dataset: str,
    *,
    data_root: str | Path | None = None,
    split: str = "test",
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    templates: Sequence[str] | None = None,
    skip_bad: bool = False,
    caption_file: str = "auto",
    shapes_classes: str = "shape",
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Zero-shot accuracy (datasets with class names) and retrieval Recall@K of a saved dir or a named model.

    ``n``: shapes: images generated (None: :data:`SHAPES_EVAL_N`); real data: evaluate at most the
    first ``n`` records (None or 0: the whole split). ``skip_bad``: unreadable items (missing or
    undecodable images, malformed annotation lines) are skipped and counted in ``skipped`` instead
    of stopping the run; every image file is then decoded once before the evaluation to find them.
    ``caption_file``: flickr30k's caption file (auto | karpathy | csv). ``num_workers``: image
    decoding workers (None: from the CPU count). Streamed datasets (wds) are read once as a stream
    of shards, never as a list of records."""
    from mmcore.data.registry import dataset_spec, load_image_text, open_image_text_stream
    from mmcore.encoders.clip import load_clip
    from mmcore.errors import ImageReadError, MMError
    from mmcore.eval.retrieval import retrieval_eval
    from mmcore.eval.zeroshot import zero_shot_eval

    if n is not None and n < 0:
        raise MMError(f"--n must be positive (or 0 for the whole split), got {n}")
    spec = dataset_spec(dataset)  # an unknown name fails before the model loads
    bundle = load_clip(model, pretrained)
    if spec.streamed:
        from mmcore.eval.stream import stream_eval

        stream = open_image_text_stream(dataset, data_root, split, skip_bad=skip_bad, limit=n or None,
                                        caption_file=caption_file)
        res = stream_eval(bundle.model, bundle.tokenizer, stream, bundle.preprocess_eval, templates=templates,
                          batch_size=batch_size, device=next(bundle.model.parameters()).device,
                          num_workers=num_workers)
        return {"model": bundle.model_name, "dataset": stream.name, **res}
    if spec.synthetic:
        if n == 0:
            raise MMError(f"{spec.name}: --n is the number of images to generate; give at least 1")
        data = load_image_text(spec.name, split=split, n=SHAPES_EVAL_N if n is None else n, seed=seed,
                               image_size=bundle.image_size, caption_file=caption_file, classes=shapes_classes)
    else:
        kw: dict[str, Any] = {"caption_file": caption_file, "limit": n or None}
        if skip_bad:
            kw["skip_bad"] = True
        data = load_image_text(dataset, root=data_root, split=split, **kw)
    if skip_bad:
        data, _ = data.drop_unreadable()
    if not len(data):
        raise MMError(f"{dataset}/{split}: no records left to evaluate" + (f" ({data.skipped} skipped)" if data.skipped else ""))
    metrics: dict[str, Any] = {"model": bundle.model_name, "dataset": data.name, "n": len(data), "skipped": data.skipped}
    try:
        if data.classnames and all(r.label is not None for r in data.records):
            zs = zero_shot_eval(bundle.model, bundle.tokenizer, data, bundle.preprocess_eval, templates=templates,
                                batch_size=batch_size, num_workers=num_workers, desc="zero-shot: encode images")
            metrics["zero_shot_accuracy"] = zs["accuracy"]
            metrics["per_class"] = zs["per_class"]
        if any(r.captions for r in data.records):
            metrics.update(retrieval_eval(bundle.model, bundle.tokenizer, data, bundle.preprocess_eval,
                                          batch_size=batch_size, num_workers=num_workers,
                                          desc="retrieval: encode images"))
    except ImageReadError as e:
        if skip_bad:
            raise
        from mmcore.data.checks import SKIP_HINT

        raise ImageReadError(e.path, e.problem + SKIP_HINT) from None
    return metrics
