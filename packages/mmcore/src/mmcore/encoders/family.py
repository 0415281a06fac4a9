"""Image–text model families: one interface that CLIP (open_clip, :mod:`mmcore.encoders.clip`) and BLIP
(transformers, :mod:`mmcore.encoders.blip`) both implement, a registry by name and a loader that tells the
family of a saved directory.

    bundle = load_image_text_model("runs/blip")          # family detected from the directory
    bundle = create_image_text_model("blip")             # the family's offline default (random tiny BLIP)
    img = bundle.encode_image(bundle.preprocess_eval.batch(uint8_images))   # [N, D], L2-normalised
    txt = bundle.encode_text(bundle.tokenizer(["a photo of a circle"]))     # [M, D], L2-normalised
    logits = bundle.similarity(img, txt)                 # logit_scale * img @ txt.T
    bundle.save("out/")                                  # the family's own format

Every bundle's ``model`` is a torch module with the open_clip calling convention the project's evaluation and
training code relies on: ``encode_image(images)``, ``encode_text(tokens)`` (unnormalised), ``logit_scale``
(log of the inverse temperature) and ``forward(images, tokens) -> (image_features, text_features,
logit_scale.exp())`` with normalised features; the tokenizer maps a list of strings to a LongTensor
[N, context_length]. So :func:`mmcore.eval.zeroshot.zero_shot_eval`, :func:`mmcore.eval.retrieval.retrieval_eval`
and :func:`mmcore.clip_train.train_clip` take a bundle of either family unchanged.

This module imports no torch: the registry and :func:`detect_family` read JSON only.
"""

from __future__ import annotations

import difflib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from mmcore.errors import DataError, MMError


@runtime_checkable
class ImageTextModel(Protocol):
    """What every family's bundle offers (``ClipBundle``, ``BlipBundle``)."""

    family: ClassVar[str]
    model: Any  # torch module: encode_image, encode_text, logit_scale, forward(images, tokens)
    tokenizer: Any  # list[str] -> LongTensor [N, context_length]
    preprocess_train: Any  # PIL / HxWx3 uint8 / CHW tensor -> normalised CHW float tensor
    preprocess_eval: Any
    model_name: str
    image_size: int

    def encode_image(self, images: Any) -> Any: ...

    def encode_text(self, tokens: Any) -> Any: ...

    @property
    def logit_scale(self) -> float: ...

    def similarity(self, image_features: Any, text_features: Any) -> Any: ...

    def save(self, out_dir: str | Path) -> Any: ...


class ImageTextBundleMixin:
    """The interface's methods over ``self.model`` (one copy for every family)."""

    model: Any

    def encode_image(self, images: Any) -> Any:
        """L2-normalised image embeddings in the shared space, [N, D] (the model's dtype and device)."""
        import torch.nn.functional as F

        return F.normalize(self.model.encode_image(images), dim=-1)

    def encode_text(self, tokens: Any) -> Any:
        """L2-normalised text embeddings in the shared space, [N, D], from ``tokenizer(texts)``."""
        import torch.nn.functional as F

        return F.normalize(self.model.encode_text(tokens), dim=-1)

    @property
    def logit_scale(self) -> float:
        """The inverse temperature (``exp`` of the model's ``logit_scale`` parameter)."""
        import torch

        return float(torch.as_tensor(self.model.logit_scale).detach().float().exp().item())

    def similarity(self, image_features: Any, text_features: Any) -> Any:
        """Contrastive logits ``logit_scale * image_features @ text_features.T`` (normalised inputs)."""
        return self.logit_scale * image_features @ text_features.T

    def image_tower(self) -> list[Any]:
        """The modules that compute the image embedding (frozen together when only the text tower trains)."""
        return [self.model.visual]

    def save_run_model(self, run_dir: str | Path) -> Path:
        """Save the model into a run directory that has its own config.json: the family's place in it
        (:attr:`Family.run_subdir`), loadable again by :func:`load_image_text_model` of ``run_dir``."""
        target = Path(run_dir) / get_family(self.family).run_subdir  # type: ignore[attr-defined]
        self.save(target)  # type: ignore[attr-defined]
        return target


@dataclass(frozen=True)
class Family:
    """One registered family: where its code lives and how its saved directories look."""

    name: str
    module: str  # the module with create / load (imported on first use)
    create: str  # create(name=None, pretrained=None, *, device) -> bundle; name None: the offline default
    load: str  # load(dir_or_name, pretrained=None, *, device) -> bundle
    default_model: str  # the offline default architecture (random weights until pretrained)
    saved_format: str  # one line: what a saved directory holds (for error messages)
    # where a run directory (one with the run's own config.json) keeps the model: "" itself, else this sub-folder
    run_subdir: str = ""

    def function(self, which: str) -> Any:
        return getattr(importlib.import_module(self.module), getattr(self, which))


FAMILIES: dict[str, Family] = {
    "clip": Family("clip", "mmcore.encoders.clip", "create_clip", "load_clip", "mm-tiny-clip",
                   "clip_config.json + model.safetensors (mmcore.encoders.clip.save_clip)"),
    "blip": Family("blip", "mmcore.encoders.blip", "create_blip", "load_blip", "mm-tiny-blip",
                   "a transformers BlipForImageTextRetrieval folder (config.json with model_type 'blip', "
                   "model.safetensors, tokenizer and image processor files), or a BLIP run directory whose model/ is one",
                   run_subdir="model"),
}


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    """The registered family ``name`` (case-insensitive); an unknown name is an MMError with the known ones."""
    key = str(name).lower()
    if key not in FAMILIES:
        close = difflib.get_close_matches(key, list(FAMILIES), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise MMError(f"unknown model family {name!r}{hint} (known: {', '.join(FAMILIES)})")
    return FAMILIES[key]


def _json_dict(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def blip_folder(path: str | Path) -> Path | None:
    """The transformers BLIP folder of ``path``: itself (config.json with model_type "blip") or, for a BLIP
    run directory (whose config.json is the run's config), ``path/model``; None otherwise."""
    path = Path(path)
    for folder in (path, path / "model"):
        cfg = _json_dict(folder / "config.json")
        if cfg is not None and cfg.get("model_type") == "blip":
            return folder
    return None


def detect_family(path: str | Path) -> str | None:
    """The family of a saved model directory, from its files alone (no torch, no weights read): "clip" for
    clip_config.json, "blip" for a transformers BLIP folder (or a BLIP run directory); None for anything else."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "clip_config.json").is_file():
        return "clip"
    if blip_folder(path) is not None:
        return "blip"
    return None


def create_image_text_model(family: str = "clip", model: str | None = None, pretrained: str | None = None, *,
                            device: str = "cpu") -> Any:
    """A ``family`` model by architecture name (None: the family's offline default, random weights) or, with
    ``pretrained``, trained weights (the family's meaning: an open_clip tag or checkpoint for CLIP)."""
    fam = get_family(family)
    return fam.function("create")(model or fam.default_model, pretrained, device=device)


def load_image_text_model(source: str | Path, family: str | None = None, pretrained: str | None = None, *,
                          device: str = "cpu") -> Any:
    """A saved directory of any registered family (its family detected; ``family`` given and different is an
    error), or a name: ``family``'s architecture / hub id (``family`` None: CLIP, the project's default)."""
    path = Path(source)
    found = detect_family(path)
    if found is not None:
        if family is not None and get_family(family).name != found:
            raise DataError(path, f"a saved {found.upper()} directory, not a {family} one")
        return get_family(found).function("load")(path, pretrained, device=device)
    if path.is_dir():
        formats = "; ".join(f"{f.name}: {f.saved_format}" for f in FAMILIES.values())
        raise DataError(path, f"not a saved model directory of a known family ({formats})")
    return get_family(family or "clip").function("load")(str(source), pretrained, device=device)
