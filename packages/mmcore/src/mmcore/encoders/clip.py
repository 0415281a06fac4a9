"""open_clip factory: any open_clip architecture by name (with a pretrained tag or a local checkpoint),
the project's own small configs from ``mmcore/model_configs/*.json``, and a saved-model directory format.

    bundle = create_clip("mm-tiny-clip")                      # random init, offline
    bundle = create_clip("ViT-B-32", "openai")                # downloads (needs network)
    bundle = create_clip("ViT-B-32", "weights.safetensors")   # local checkpoint
    save_clip(bundle.model, "out/", bundle.model_name, bundle.model_cfg)
    bundle = load_clip("out/")                                # clip_config.json + model.safetensors

Small models (image side <= 64 px) get tensor-level preprocessing (no PIL resampling pipeline), so
they can be trained quickly on CPU; larger ones get open_clip's standard transforms.
"""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mmcore.checkpoint import count_parameters  # noqa: F401  (re-exported: mmcore.recipes.clip_pretrain uses it from here)
from mmcore.encoders.family import ImageTextBundleMixin
from mmcore.errors import DataError, MMError
from mmcore.io import read_json, write_json

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
CONFIG_FILE = "clip_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "mm-clip/1"
FAST_PREPROCESS_MAX_SIZE = 64  # up to this image side, preprocessing is done on tensors

_registered = False


@dataclass
class ClipBundle(ImageTextBundleMixin):
    """A CLIP model with everything needed to use it (the "clip" family of :mod:`mmcore.encoders.family`)."""

    family: ClassVar[str] = "clip"

    model: Any  # open_clip CLIP / CustomTextCLIP
    tokenizer: Any  # callable: list[str] -> LongTensor [N, context_length]
    preprocess_train: Any  # callable: PIL image / HxWx3 uint8 array / CHW tensor -> normalised CHW float tensor
    preprocess_eval: Any
    model_name: str
    model_cfg: dict
    image_size: int

    def save(self, out_dir: str | Path) -> None:
        """:func:`save_clip` of this bundle (clip_config.json + model.safetensors; :func:`load_clip` reads it)."""
        save_clip(self.model, out_dir, self.model_name, self.model_cfg)


RANDOM_INIT_WARNING = ("random weights: the model is an architecture name without a pretrained tag or checkpoint, "
                       "so every number measures an untrained network")


def project_model_names() -> list[str]:
    """The project's own model configs (``mmcore/model_configs/*.json``), without importing open_clip."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def register_model_configs() -> list[str]:
    """Register the project's model configs with open_clip (idempotent); returns their names."""
    global _registered
    import open_clip

    names = project_model_names()
    if not _registered or any(n not in open_clip.list_models() for n in names):
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return names


# --------------------------------------------------------------------------- preprocessing


class TensorPreprocess:
    """Cheap preprocessing on tensors: to float [0, 1] → resize (shortest side) + centre crop when the
    size differs → (train only) a random shift of up to ``max_shift`` pixels → normalise.

    The shift is the only augmentation: flips or colour jitter would contradict captions such as
    "a red circle on the left". :meth:`batch` does the same on a uint8 NCHW batch at once.
    """

    def __init__(self, image_size: int, mean, std, train: bool = False, max_shift: int = 2):
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = train
        self.max_shift = max_shift if train else 0

    def __repr__(self) -> str:
        return f"TensorPreprocess(size={self.image_size}, train={self.train}, max_shift={self.max_shift})"

    @staticmethod
    def to_uint8_chw(img: Any):
        import numpy as np
        import torch

        if isinstance(img, torch.Tensor):
            t = img
        else:
            if not isinstance(img, np.ndarray):  # PIL image
                img = np.asarray(img.convert("RGB"))
            t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)  # copy: arrays may be read-only
        return t

    def _resize(self, x):
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        s = self.image_size
        if (h, w) == (s, s):
            return x
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - s) // 2, (nw - s) // 2
        return x[..., top : top + s, left : left + s]

    def _normalize(self, x):
        import torch

        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def random_shifts(self, n: int, generator=None):
        """Per-image (dy, dx) offsets into the padded image, each in [0, 2 * max_shift]."""
        import torch

        m = self.max_shift
        return torch.randint(0, 2 * m + 1, (n,), generator=generator), torch.randint(0, 2 * m + 1, (n,), generator=generator)

    def _shift(self, x, shifts):
        import torch
        import torch.nn.functional as F

        m = self.max_shift
        n, c, h, w = x.shape
        dy, dx = shifts
        padded = F.pad(x, (m, m, m, m), mode="replicate")
        # one advanced-indexing gather cuts a differently shifted window out of each image
        rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
        return padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]

    def batch(self, images, generator=None, shifts=None):
        """uint8 or float [N, 3, H, W] → normalised float batch. When ``train``, each image is shifted by
        ``shifts`` (from :meth:`random_shifts`) or by offsets drawn from ``generator``."""
        import torch

        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        x = self._resize(x)
        if self.train and self.max_shift > 0:
            x = self._shift(x, shifts if shifts is not None else self.random_shifts(x.shape[0], generator))
        return self._normalize(x)

    def __call__(self, img: Any):
        t = self.to_uint8_chw(img)
        return self.batch(t.unsqueeze(0))[0]


def make_preprocess(image_size: int, preprocess_cfg: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(train, eval) preprocessing for ``image_size``: :class:`TensorPreprocess` up to
    :data:`FAST_PREPROCESS_MAX_SIZE`, else open_clip's transforms; ``preprocess_cfg``: open_clip
    ``PreprocessCfg`` fields (mean, std, interpolation, resize_mode, ...; unknown keys are ignored)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    pp = dict(preprocess_cfg or {})
    cfg = PreprocessCfg(**{**{k: v for k, v in pp.items() if k in PreprocessCfg.__dataclass_fields__}, "size": image_size})
    if image_size <= FAST_PREPROCESS_MAX_SIZE:
        return (
            TensorPreprocess(image_size, cfg.mean, cfg.std, train=True),
            TensorPreprocess(image_size, cfg.mean, cfg.std, train=False),
        )
    return image_transform_v2(cfg, is_train=True), image_transform_v2(cfg, is_train=False)


def _make_preprocess(model: Any, image_size: int) -> tuple[Any, Any]:
    return make_preprocess(image_size, getattr(model.visual, "preprocess_cfg", None))


# --------------------------------------------------------------------------- model construction


def _image_size(model_cfg: dict) -> int:
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, list | tuple) else size)


def _check_name(model_name: str) -> str:
    import open_clip

    register_model_configs()
    name = model_name.replace("/", "-")
    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise MMError(
            f"unknown CLIP model {model_name!r}{hint} (project models: {', '.join(register_model_configs())}; "
            "`python -c 'import open_clip; print(open_clip.list_models())'` lists all)"
        )
    return name


def _instantiate(model_cfg: dict) -> Any:
    """Build an open_clip model from a config dict (the same class choice as open_clip's factory)."""
    from open_clip.coca_model import CoCa
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(model_cfg)
    hf_text = "hf_model_name" in cfg.get("text_cfg", {})
    if hf_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    custom = cfg.pop("custom_text", False) or hf_text
    cls = (CoCa if "multimodal_cfg" in cfg else CustomTextCLIP) if custom else CLIP
    try:
        return cls(**cfg)
    except OSError as e:  # an HF text tower whose config cannot be fetched offline
        raise MMError(f"cannot build the model's text tower offline ({e})") from None


def _tokenizer(model_name: str, model_cfg: dict) -> Any:
    import open_clip

    text_cfg = model_cfg.get("text_cfg", {})
    ctx = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name") or "siglip" in model_name.lower():
        try:
            return open_clip.get_tokenizer(model_name, context_length=ctx)
        except Exception as e:
            raise MMError(f"cannot load the tokenizer of {model_name!r} ({e}); it may need the network") from None
    return open_clip.tokenizer.SimpleTokenizer(context_length=ctx, **(text_cfg.get("tokenizer_kwargs") or {}))


def _looks_like_path(s: str) -> bool:
    return s.endswith((".safetensors", ".pt", ".pth", ".bin")) or os.sep in s or s.startswith(".")


def _load_checkpoint(model: Any, path: Path) -> None:
    """Load a local checkpoint (safetensors, or a torch file with weights_only=True)."""
    if not path.is_file():
        raise DataError(path, "checkpoint file not found")
    if path.suffix == ".safetensors":
        from mmcore.checkpoint import load_model_weights

        load_model_weights(model, path)
        return
    from mmcore.io import torch_load_safe

    sd = torch_load_safe(path)  # weights_only=True: a pickled object is a DataError, not code execution
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise DataError(path, "not a state dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    own = model.state_dict()
    if "logit_scale" in sd and "logit_scale" in own:  # scalar vs [1] across open_clip versions
        sd["logit_scale"] = sd["logit_scale"].reshape(own["logit_scale"].shape)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        detail = [f"{len(x)} {what}, e.g. {x[0]}" for x, what in
                  ((bad, "shape mismatch(es)"), (missing, "missing key(s)"), (unexpected, "unexpected key(s)")) if x]
        raise DataError(path, "checkpoint does not match the model architecture: " + "; ".join(detail))
    model.load_state_dict(sd)


def create_clip(model_name: str, pretrained: str | None = None, *, device: str = "cpu") -> ClipBundle:
    """An open_clip model by name. ``pretrained``: None (random init), an open_clip tag (e.g. "openai";
    downloads on first use) or a local ``.safetensors`` / ``.pt`` / ``.bin`` checkpoint."""
    import open_clip
    from open_clip.model import set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    name = _check_name(model_name)
    model_cfg = open_clip.get_model_config(name)
    if pretrained and not _looks_like_path(pretrained) and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise MMError(
                f"unknown pretrained tag {pretrained!r} for {name}; known tags: {', '.join(tags) or 'none'} "
                "(or pass a local .safetensors/.pt file)"
            )
        try:
            model = open_clip.create_model(name, pretrained=pretrained, device=device)
        except Exception as e:
            raise MMError(f"cannot load pretrained weights {name}/{pretrained} ({e}); offline? pass a local checkpoint file") from None
    else:
        model = _instantiate(model_cfg)
        set_model_preprocess_cfg(model, {**PreprocessCfg().__dict__, "size": _image_size(model_cfg)})
        if pretrained:
            _load_checkpoint(model, Path(pretrained))
    model = model.to(device)
    size = _image_size(model_cfg)
    train_pp, eval_pp = _make_preprocess(model, size)
    return ClipBundle(model, _tokenizer(name, model_cfg), train_pp, eval_pp, name, model_cfg, size)


def save_clip(model: Any, out_dir: str | Path, model_name: str, model_cfg: dict) -> None:
    """Write ``model.safetensors`` and ``clip_config.json`` (enough for :func:`load_clip`)."""
    from mmcore.checkpoint import save_model, unwrap

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pp = dict(getattr(unwrap(model).visual, "preprocess_cfg", None) or {})
    save_model(model, out_dir / WEIGHTS_FILE, metadata={"format": FORMAT, "model_name": model_name})
    write_json(out_dir / CONFIG_FILE, {"format": FORMAT, "model_name": model_name, "model_cfg": model_cfg, "preprocess_cfg": pp})


def check_model_source(model: str | Path, pretrained: str | None = None) -> str:
    """``"dir"`` (a saved model directory) or ``"name"`` (an architecture name); a missing or wrong path
    (or ``pretrained`` checkpoint file) is a DataError. Cheap: reads no weights and imports no torch."""
    path = Path(model)
    if pretrained and _looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise DataError(pretrained, "checkpoint file not found")
    if not path.is_dir():
        if _looks_like_path(str(model)) and not path.exists():
            raise DataError(path, "model directory not found")
        if path.is_file():
            raise DataError(path, f"expected a model directory (with {CONFIG_FILE}) or a model name, not a weights "
                                  "file (a weights file is the pretrained checkpoint of a model name, as in "
                                  "`mm clip eval --model NAME --pretrained FILE`)")
        return "name"
    if not (path / CONFIG_FILE).is_file():
        raise DataError(path, f"not a saved CLIP model directory ({CONFIG_FILE} missing)")
    if not (path / WEIGHTS_FILE).is_file():
        raise DataError(path / WEIGHTS_FILE, "weights file not found")
    return "dir"


def is_random_init(model: str | Path, pretrained: str | None = None) -> bool:
    """Whether ``model`` / ``pretrained`` give untrained weights: an architecture name with neither a
    pretrained tag nor a checkpoint. A saved directory of another family (a BLIP run) holds trained weights."""
    from mmcore.encoders.family import detect_family

    if detect_family(model) not in (None, "clip"):
        return False
    return not pretrained and check_model_source(model) == "name"


def random_init_marks(model: str | Path, pretrained: str | None = None) -> dict[str, Any]:
    """``{"random_init": False}``, or ``{"random_init": True, "warning": ...}`` for a metrics file."""
    if is_random_init(model, pretrained):
        return {"random_init": True, "warning": RANDOM_INIT_WARNING}
    return {"random_init": False}


def load_clip(model: str | Path, pretrained: str | None = None, *, device: str = "cpu") -> ClipBundle:
    """A saved model directory (from :func:`save_clip`) or an open_clip model name (+ ``pretrained``)."""
    from open_clip.model import set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    from mmcore.checkpoint import load_model_weights

    path = Path(model)
    if check_model_source(model) == "name":
        return create_clip(str(model), pretrained, device=device)
    cfg_path = path / CONFIG_FILE
    meta = read_json(cfg_path)
    if not isinstance(meta, dict) or "model_cfg" not in meta or "model_name" not in meta:
        raise DataError(cfg_path, "missing 'model_name' or 'model_cfg'")
    model_cfg = meta["model_cfg"]
    net = _instantiate(model_cfg)
    size = _image_size(model_cfg)
    set_model_preprocess_cfg(net, {**PreprocessCfg().__dict__, **meta.get("preprocess_cfg", {}), "size": size})
    load_model_weights(net, path / WEIGHTS_FILE)
    net = net.to(device)
    train_pp, eval_pp = _make_preprocess(net, size)
    return ClipBundle(net, _tokenizer(meta["model_name"], model_cfg), train_pp, eval_pp, meta["model_name"], model_cfg, size)

