"""Unlearning as a library call: a CLIP and two data sets in, the unlearned CLIP out.

    model = cliperase.unlearn(bundle, forget, retain, UnlearnConfig(steps=50))

No Accelerator, output directory or :class:`~cliperase.forget_sets.ForgetSplit` is needed from the caller;
this wraps :func:`cliperase.methods.unlearn`, the call `mm unlearn run` makes, so the numbers are the same.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import ConfigError, MMError

from cliperase.config import ForgetSpec, UnlearnConfig


def _as_data(data: ImageTextData | Sequence[ImageTextRecord], name: str) -> ImageTextData:
    if isinstance(data, ImageTextData):
        return data
    records = list(data)
    if not all(isinstance(r, ImageTextRecord) for r in records):
        raise MMError(f"{name}: expected ImageTextData or a list of ImageTextRecord")
    return ImageTextData(name=name, records=records)


def as_bundle(model: Any) -> Any:
    """A :class:`~mmcore.encoders.clip.ClipBundle` from a bundle, a model dir / open_clip name (loaded), or an
    open_clip model (its tokenizer and eval preprocessing rebuilt from the model itself)."""
    from mmcore.encoders.clip import ClipBundle, _make_preprocess

    if isinstance(model, ClipBundle) or (hasattr(model, "family") and hasattr(model, "tokenizer")):
        return model  # a bundle of any family (mmcore.encoders.family)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from mmcore.encoders.family import load_image_text_model

        return load_image_text_model(model)
    if not (hasattr(model, "encode_image") and hasattr(model, "encode_text")):
        raise MMError(f"expected a CLIP (ClipBundle, model dir, open_clip name or model); got {type(model).__name__}")
    import open_clip

    size = model.visual.image_size
    size = int(size[0] if isinstance(size, list | tuple) else size)
    if getattr(model, "transformer", None) is None:  # HF text towers need their own tokenizer: pass a bundle
        raise MMError("this model's text tower is not open_clip's own transformer: pass a ClipBundle "
                      "(mmcore.load_clip) so that its tokenizer comes along")
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=int(model.context_length))
    train_pp, eval_pp = _make_preprocess(model, size)
    return ClipBundle(model, tokenizer, train_pp, eval_pp, "in-memory", {}, size)


def unlearn(model: Any, forget: ImageTextData | Sequence[ImageTextRecord],
            retain: ImageTextData | Sequence[ImageTextRecord], config: UnlearnConfig | None = None, *,
            inplace: bool = False, progress: str | None = None) -> Any:
    """Unlearn ``forget`` (D_f) from ``model`` while keeping ``retain`` (D_r); returns the unlearned model.

    ``model``: a ClipBundle, a saved model dir / open_clip name, or an open_clip CLIP. ``config`` chooses the
    method and its settings (its data and forget-set fields are not used: the data are given). The input model
    is left as it was unless ``inplace`` (then no copy of the weights is made and the input is changed)."""
    from cliperase.forget_sets import ForgetSplit
    from cliperase.methods import get_method
    from cliperase.methods import unlearn as run

    cfg = config or UnlearnConfig()
    if not get_method(cfg.method).in_memory:
        raise ConfigError(f"method {cfg.method!r} needs the model's recorded training, not only given data: use "
                          f"cliperase.run_unlearning (or `mm unlearn run --method {cfg.method}`)")
    # validate() also checks that exactly one forget set is named; here the data name it.
    dataclasses.replace(cfg, forget=ForgetSpec(keyword="given")).validate()
    bundle = as_bundle(model)
    if not inplace:
        bundle = dataclasses.replace(bundle, model=copy.deepcopy(bundle.model))
    f, r = _as_data(forget, "forget"), _as_data(retain, "retain")
    if not len(f) or not len(r):
        raise MMError(f"unlearning needs a non-empty forget and retain set; got {len(f)} and {len(r)} records")
    empty = dataclasses.replace(r, records=[])
    split = ForgetSplit(f, r, dataclasses.replace(f, records=[]), empty, None, "given in memory")
    with _global_state_kept():
        from mmcore.distributed import build_accelerator

        accelerator = build_accelerator(dataclasses.replace(cfg.accelerator, log_with="none"))
        return run(bundle, split, cfg, accelerator, desc=progress).model


class _global_state_kept:
    """Library calls leave torch's global deterministic-algorithms switch as they found it (building an
    Accelerator turns it on for CPU runs)."""

    def __enter__(self) -> None:
        import torch

        self.state = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled())

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.use_deterministic_algorithms(self.state[0], warn_only=self.state[1])
