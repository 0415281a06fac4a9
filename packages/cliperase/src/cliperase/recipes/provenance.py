"""Where a saved model came from: the configs recorded next to it (``config.json`` of `mm clip pretrain` or
`mm unlearn run`), followed back to the model it started from; and whether Retrain can run for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.errors import MMError
from mmcore.io import read_json

from cliperase.config import UnlearnConfig

_MAX_CHAIN = 9  # recorded configs followed from a model to the one it started from


def _config_chain(model: str) -> list[tuple[Path, dict[str, Any]]]:
    """The readable ``config.json`` records from a saved model back towards the model it started from: an
    `mm unlearn run` record (it has ``method``) leads on to its ``model``; any other record ends the chain."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    while len(chain) < _MAX_CHAIN:
        path = Path(model) / "config.json"
        if not path.is_file():
            break
        try:
            raw = read_json(path)
        except MMError:
            break
        if not isinstance(raw, dict):
            break
        chain.append((path, raw))
        if not ("method" in raw and isinstance(raw.get("model"), str)):
            break
        model = raw["model"]
    return chain


def pretrain_config(model: str) -> dict[str, Any] | None:
    """The training config recorded next to a saved model (``config.json`` of `mm clip pretrain`);
    for a model written by `mm unlearn run`, that of the model it started from."""
    chain = _config_chain(model)
    if not chain:
        return None
    raw = chain[-1][1]
    if "method" in raw and isinstance(raw.get("model"), str) and len(chain) < _MAX_CHAIN:
        return None  # an unlearning run of a model with no recorded training (an open_clip name)
    return raw


def retrain_unavailable(cfg: UnlearnConfig) -> str | None:
    """Why Retrain cannot be run for ``cfg.model`` / ``cfg.pretrained`` (None when it can). Reads only the
    configs recorded next to saved models: nothing is loaded or downloaded.

    Retrain is the original model trained again, by its own recipe, on its training data without D_f. That
    is possible for a model trained here from random weights (`mm clip pretrain`, or a random-init model
    name), not for weights trained elsewhere on data this project does not have: an open_clip pretrained tag
    or checkpoint, or a saved model that started from one (fine-tuned or unlearned from it). A model of another
    family than CLIP (a BLIP run) is not retrained here: Retrain re-runs the CLIP pretraining recipe."""
    from mmcore.encoders.family import detect_family

    family = detect_family(cfg.model)
    if family not in (None, "clip"):
        return f"{family.upper()} model {cfg.model!r} (Retrain re-runs the CLIP pretraining recipe)"
    if cfg.pretrained:
        return f"model {cfg.model!r} with pretrained weights {cfg.pretrained!r}"
    for path, raw in _config_chain(cfg.model):
        if raw.get("pretrained"):
            return (f"model {cfg.model!r}, which started from pretrained weights {raw['pretrained']!r} "
                    f"(recorded in {path})")
    return None


def retrain_error(reason: str) -> MMError:
    """The error of a Retrain that cannot run, with ``reason`` (from :func:`retrain_unavailable`)."""
    if "Retrain re-runs the CLIP pretraining recipe" in reason:
        return MMError(f"Retrain is unavailable for the {reason}: retraining a BLIP from scratch on D_r is "
                       "`mm clip pretrain --family blip` on the retain data, not part of `mm unlearn`")
    return MMError(
        f"Retrain is unavailable for {reason}. Retrain means the original model trained again, with its own "
        "recipe, on its training data without the forget set D_f (the reference that unlearning approximates). "
        "These weights were trained on data this project does not have, so that training cannot be repeated "
        "without D_f, and training from random weights on D_r alone would be a different, much weaker model, "
        "not Retrain. Compare against the original and FT instead, or use a model trained here "
        "(`mm clip pretrain`), for which Retrain re-runs the recorded recipe."
    )
