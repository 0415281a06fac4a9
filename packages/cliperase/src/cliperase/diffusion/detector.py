"""Concept detectors for generated images — never the unlearned model itself.

* :class:`ShapeDetector`: a small CNN trained (by ``mm diffusion pretrain``) on the same rendering as the
  diffusion training set, with augmentation and an optional ``other`` class; saved next to the pipeline
  in ``detector/`` (``model.safetensors`` + ``config.json``).
* :class:`ClipZeroShotDetector`: the ORIGINAL CLIP's zero-shot classifier over class names (used when a
  pipeline has no trained detector, e.g. Stable Diffusion).
* :class:`ColorDetector`: the colour of the drawn shape, for colour concepts (no training: the pixels that
  differ from the background, their median colour, the nearest palette colour of :data:`mmcore.data.shapes.COLORS`;
  ``other`` where too few pixels differ).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmcore.checkpoint import load_model_weights, save_model
from mmcore.distributed import progress_bar
from mmcore.errors import DataError
from mmcore.io import read_json, write_json
from torch import nn
from torch.nn import functional as F

DETECTOR_DIR = "detector"


class ShapeDetector(nn.Module):
    """Conv net → class logits. Input: ``[B, 3, S, S]`` in [0, 1] (resized to ``image_size``)."""

    def __init__(self, classnames: Sequence[str], image_size: int = 16, width: int = 32):
        super().__init__()
        self.classnames = list(classnames)
        self.image_size = image_size
        self.width = width
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())

        self.features = nn.Sequential(
            block(3, w), block(w, w), nn.MaxPool2d(2), block(w, 2 * w), block(2 * w, 2 * w), nn.MaxPool2d(2),
            block(2 * w, 2 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * w, len(self.classnames))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.features(x * 2 - 1))

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """``[N, H, W, 3]`` float in [0, 1] (or uint8) → class probabilities ``[N, C]``."""
        x = _to_tensor(images)
        self.eval()
        return torch.cat([F.softmax(self(x[i : i + 256]), -1) for i in range(0, len(x), 256)]).numpy()

    def save(self, out_dir: str | Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_model(self, out_dir / "model.safetensors")
        write_json(out_dir / "config.json", {"classnames": self.classnames, "image_size": self.image_size, "width": self.width})
        return out_dir

    @classmethod
    def load(cls, dir_: str | Path) -> ShapeDetector:
        dir_ = Path(dir_)
        cfg = read_json(dir_ / "config.json")
        try:
            det = cls(cfg["classnames"], int(cfg["image_size"]), int(cfg["width"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(dir_ / "config.json", f"bad detector config ({e})") from None
        load_model_weights(det, dir_ / "model.safetensors")
        return det.eval()


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    arr = np.asarray(images)
    x = torch.from_numpy(arr.astype(np.float32))
    if arr.dtype == np.uint8:
        x = x / 255.0
    return x.permute(0, 3, 1, 2).contiguous()


def train_detector(
    images: np.ndarray,
    labels: np.ndarray,
    classnames: Sequence[str],
    *,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    seed: int = 0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[ShapeDetector, dict[str, float]]:
    """Train a :class:`ShapeDetector` on ``images [N,S,S,3] uint8``; returns it and train/val accuracy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    det = ShapeDetector(classnames, image_size=images.shape[1], width=width)
    x_all = _to_tensor(images)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    opt = torch.optim.AdamW(det.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    det.train()
    with progress_bar(steps, "detector") as advance:
        for _ in range(steps):
            idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
            loss = F.cross_entropy(det(x_all[idx]), y_all[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            advance(loss=float(loss.detach()))
    det.eval()
    metrics = {"detector_train_acc": float((det.predict(images).argmax(1) == labels).mean())}
    if val is not None:
        metrics["detector_val_acc"] = float((det.predict(val[0]).argmax(1) == val[1]).mean())
    return det, metrics


class ColorDetector:
    """Which palette colour a generated shape image shows. The background is the median of the border pixels;
    pixels farther than ``threshold`` (0-255 RGB distance) from it are the shape; their median colour's
    distances to the palette give the probabilities (softmax of ``-d / temperature``). Fewer than
    ``min_fraction`` shape pixels: all mass on ``other``. Made for the diffusion demo's rendering (one centred
    shape on plain grey); not a general colour detector."""

    def __init__(self, colors: Sequence[str], threshold: float = 40.0, min_fraction: float = 0.03,
                 temperature: float = 10.0):
        from mmcore.data.shapes import COLORS

        from cliperase.diffusion.data import OTHER_CLASS

        self.classnames = [*colors, OTHER_CLASS]
        self.palette = np.asarray([COLORS[c] for c in colors], np.float32)
        self.threshold, self.min_fraction, self.temperature = threshold, min_fraction, temperature

    def predict(self, images: np.ndarray) -> np.ndarray:
        arr = np.asarray(images, np.float32)
        if np.asarray(images).dtype != np.uint8:
            arr = arr * 255.0
        out = np.zeros((len(arr), len(self.classnames)), np.float32)
        for i, im in enumerate(arr):
            border = np.concatenate([im[0], im[-1], im[:, 0], im[:, -1]])
            fg = np.linalg.norm(im - np.median(border, 0), axis=-1) > self.threshold
            if fg.mean() < self.min_fraction:
                out[i, -1] = 1.0
                continue
            d = np.linalg.norm(self.palette - np.median(im[fg], 0), axis=-1)
            p = np.exp(-(d - d.min()) / self.temperature)
            out[i, :-1] = p / p.sum()
        return out


class ClipZeroShotDetector:
    """Zero-shot shape/concept classifier from the original CLIP (prompt ensemble over templates)."""

    def __init__(self, bundle: Any, classnames: Sequence[str], templates: Sequence[str] = ("a photo of a {}", "a {}")):
        self.bundle = bundle
        self.classnames = list(classnames)
        with torch.no_grad():
            embs = []
            for c in self.classnames:
                t = bundle.model.encode_text(bundle.tokenizer([tpl.format(c) for tpl in templates]))
                t = F.normalize(t, dim=-1).mean(0)
                embs.append(F.normalize(t, dim=-1))
            self.text = torch.stack(embs)

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        img = clip_image_features(self.bundle, images)
        scale = self.bundle.model.logit_scale.exp()
        return F.softmax(scale * img @ self.text.T, -1).numpy()


@torch.no_grad()
def clip_image_features(bundle: Any, images: np.ndarray) -> torch.Tensor:
    """L2-normalised CLIP image embeddings of ``[N,H,W,3]`` images in [0, 1] (resized to the model's size)."""
    arr = np.asarray(images)
    u8 = arr if arr.dtype == np.uint8 else np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
    x = torch.stack([bundle.preprocess_eval(im) for im in u8])
    bundle.model.eval()
    return F.normalize(bundle.model.encode_image(x), dim=-1)


@torch.no_grad()
def clip_score(bundle: Any, images: np.ndarray, prompt: str) -> np.ndarray:
    """CLIPScore per image: ``max(100 · cos(image, prompt), 0)`` with the given (original) CLIP."""
    img = clip_image_features(bundle, images)
    txt = F.normalize(bundle.model.encode_text(bundle.tokenizer([prompt])), dim=-1)
    return (100 * (img @ txt.T).squeeze(1)).clamp(min=0).numpy()
