"""The diffusion demo's training images: mmcore's synthetic shapes in a deliberately simple rendering.

The generator only has to learn a handful of shapes drawn large, centred, on a plain grey
background, at a small resolution (16 px by default). The detector sees the same rendering with
augmentation (random colour, size, small shifts, blur, noise) so it also fits imperfect samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmcore.data.shapes import COLORS, render_shape, shape_captions
from mmcore.errors import ConfigError

DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
DEFAULT_COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
OTHER_CLASS = "other"  # detector class for "no recognisable shape" (blends, blobs, empty)


def check_names(shapes: Sequence[str], colors: Sequence[str]) -> None:
    from mmcore.data.shapes import ALL_SHAPES

    bad = [s for s in shapes if s not in ALL_SHAPES]
    if bad or not shapes:
        raise ConfigError(f"shapes must be a non-empty subset of {', '.join(ALL_SHAPES)}; got {list(shapes)}")
    badc = [c for c in colors if c not in COLORS]
    if badc or not colors:
        raise ConfigError(f"colors must be a non-empty subset of {', '.join(COLORS)}; got {list(colors)}")


def render_clean(shape: str, color: str, image_size: int, radius_frac: float) -> np.ndarray:
    """The canonical training rendering: one large centred shape on plain grey."""
    return render_shape(shape, color, radius_frac * image_size, "center", image_size, background="plain", centred=True)


def diffusion_training_set(
    shapes: Sequence[str], colors: Sequence[str], image_size: int, radius_frac: float
) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """Every (shape, colour) image once: ``images [N,S,S,3] uint8``, captions per image, shape labels.

    The rendering is deterministic, so the set is just the product; the caption is what varies."""
    check_names(shapes, colors)
    images, captions, labels = [], [], []
    for si, s in enumerate(shapes):
        for c in colors:
            images.append(render_clean(s, c, image_size, radius_frac))
            captions.append(shape_captions(s, c, "large", "center"))
            labels.append(si)
    return np.stack(images), captions, np.asarray(labels)


def detector_training_set(
    shapes: Sequence[str],
    n: int,
    seed: int,
    image_size: int,
    radius_frac: float,
    other_class: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented renderings for the shape detector: ``images [n,S,S,3] uint8``, labels.

    With ``other_class``, one extra label (``len(shapes)``) holds images with no single clear shape:
    empty backgrounds, 50/50 blends of two different shapes, and heavily blurred shapes, so that a
    generator that lost a concept is not credited with it just because it drew a round blob."""
    rng = np.random.default_rng(seed)
    k = len(shapes)
    n_classes = k + int(other_class)
    labels = rng.permutation(np.arange(n) % n_classes)
    images = np.empty((n, image_size, image_size, 3), np.uint8)

    def one_shape(shape_idx: int) -> np.ndarray:
        rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
        radius = radius_frac * image_size * rng.uniform(0.8, 1.15)
        centre = (image_size / 2 + rng.uniform(-1.5, 1.5), image_size / 2 + rng.uniform(-1.5, 1.5))
        bg = tuple(int(v) for v in np.clip(128 + rng.normal(0, 25, 3), 0, 255))
        img = render_shape(shapes[shape_idx], rgb, radius, centre, image_size, background=bg, jitter=0.0)
        return img.astype(np.float32)

    for i, lab in enumerate(labels):
        if lab < k:
            img = one_shape(int(lab))
            if rng.random() < 0.5:
                img = _blur(img, rng.uniform(0.3, 1.0))
        else:
            kind = rng.integers(0, 3)
            if kind == 0:  # empty background
                img = np.broadcast_to(np.clip(128 + rng.normal(0, 25, 3), 0, 255), (image_size, image_size, 3)).astype(np.float32)
            elif kind == 1:  # blend of two different shapes
                a, b = rng.choice(k, size=2, replace=False) if k > 1 else (0, 0)
                img = 0.5 * one_shape(int(a)) + 0.5 * one_shape(int(b))
            else:  # a shape blurred beyond recognition
                img = _blur(one_shape(int(rng.integers(0, k))), rng.uniform(2.0, 3.0))
        img = img + rng.normal(0, rng.uniform(0, 12), img.shape)
        if rng.random() < 0.5:  # every default shape is left-right symmetric
            img = img[:, ::-1]
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an HxWx3 float image (edge padding)."""
    r = max(1, int(np.ceil(2.5 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float32)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    tmp = sum(w[j] * pad[j : j + img.shape[0], :, :] for j in range(2 * r + 1))
    return sum(w[j] * tmp[:, j : j + img.shape[1], :] for j in range(2 * r + 1))
