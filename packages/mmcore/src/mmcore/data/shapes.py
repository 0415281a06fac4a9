"""Synthetic shapes: the offline default image–text dataset.

Each image shows one coloured shape (of :data:`SHAPES`) of a size (small/large) at a position
(left/right/top/bottom/center, with jitter) on a grey, slightly noisy background. Captions describe
it in several ways ("a small red circle on the left", "a red circle", "a photo of a circle", ...);
the label is the shape's index in ``shapes`` (``classes="shape"``, the default: 10 classes), or with
``classes="shape_color"`` the index of the (shape, colour) pair (10 x 10 = 100 classes named "red circle",
..., the world of the forget-ratio sweep; the captions are the same). Everything is deterministic from the seed.

Drawing is vectorised numpy: each shape is a signed distance function (SDF) in unit coordinates,
and pixel coverage ``clip(0.5 - sdf * radius_px, 0, 1)`` gives anti-aliased edges without
supersampling, so 20k images at 32 px take about a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mmcore.data.records import ImageTextData, ImageTextRecord
from mmcore.errors import MMError

# Fixed orientation, chosen to stay distinguishable at 32 px even when small (radius ~6 px):
# no two shapes differ only by a detail smaller than a couple of pixels.
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "heart",
    "diamond",
    "ring",
    "crescent",
    "semicircle",
)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (245, 140, 20),
    "pink": (250, 120, 190),
    "cyan": (30, 210, 220),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}

SIZES: dict[str, float] = {"small": 0.19, "large": 0.32}  # radius as a fraction of the image size
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}

# Caption templates; every record gets all of them (a training loader picks one at random).
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{a_size} {size} {color} {shape} {where}",
    "{a_color} {color} {shape}",
    "a photo of a {shape}",
    "a {shape}",
    "{a_size} {size} {shape}",
    "a {shape} {where}",
    "a photo of {a_color} {color} {shape}",
)

# Zero-shot prompt templates. Both also occur as training captions, so a model trained on shapes
# alone sees no out-of-distribution wording at evaluation time; "a photo of a {}" comes first.
TEMPLATES: list[str] = ["a photo of a {}", "a {}"]

#: What a label names: the shape alone, or the (shape, colour) pair (class "red circle").
CLASS_SCHEMES: tuple[str, ...] = ("shape", "shape_color")

_CHUNK = 2048  # images drawn per vectorised batch (bounds memory at ~100 MB of float32)


# ---------------------------------------------------------------- signed distance functions
# Unit coordinates: the shape fits in [-1, 1]^2, y points up. Negative inside.


def _polygon(vertices: Sequence[tuple[float, float]]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Exact SDF of a simple polygon (Inigo Quilez's sdPolygon, vectorised)."""
    v = np.asarray(vertices, dtype=np.float32)

    def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = (x - v[0, 0]) ** 2 + (y - v[0, 1]) ** 2
        s = np.ones_like(x)
        n = len(v)
        for i in range(n):
            j = (i - 1) % n
            ex, ey = v[j] - v[i]
            wx, wy = x - v[i, 0], y - v[i, 1]
            t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
            bx, by = wx - ex * t, wy - ey * t
            d = np.minimum(d, bx * bx + by * by)
            c1 = y >= v[i, 1]
            c2 = y < v[j, 1]
            c3 = ex * wy > ey * wx
            flip = (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
            s = np.where(flip, -s, s)
        return s * np.sqrt(d)

    return sdf


def _centred(vertices: list[tuple[float, float]], extent: float = 0.95) -> list[tuple[float, float]]:
    """Centre a polygon's bounding box at the origin and scale its larger half-extent to ``extent``."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    v = (v - (lo + hi) / 2) / ((hi - lo).max() / 2) * extent
    return [tuple(p) for p in v.tolist()]


def _star_vertices(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = np.pi / 2 + k * np.pi / points
        out.append((r * np.cos(a), r * np.sin(a)))
    return out


def _circle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y) - 0.95


def _ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(np.sqrt(x * x + y * y) - 0.7) - 0.25


def _crescent(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    outer = np.sqrt(x * x + y * y) - 0.95
    bite = np.sqrt((x - 0.45) ** 2 + (y - 0.25) ** 2) - 0.75
    return np.maximum(outer, -bite)


def _semicircle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Half disc, flat side down, bounding box centred.
    cy = -0.48
    return np.maximum(np.sqrt(x * x + (y - cy) ** 2) - 0.96, cy - y)


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Inigo Quilez's exact sdHeart, whose shape spans y in [0, 1.10]; rescale to fit [-1, 1]^2.
    s = 0.6
    px = np.abs(x) * s
    py = y * s + 0.552
    lobe = np.sqrt((px - 0.25) ** 2 + (py - 0.75) ** 2) - np.sqrt(2.0) / 4.0
    m = np.maximum(px + py, 0.0) * 0.5
    d1 = px * px + (py - 1.0) ** 2
    d2 = (px - m) ** 2 + (py - m) ** 2
    body = np.sqrt(np.minimum(d1, d2)) * np.sign(px - py)
    return np.where(px + py > 1.0, lobe, body) / s


_SDF: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _circle,
    "square": _polygon([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]),
    "triangle": _polygon(_centred([(0.0, 1.0), (-0.866, -0.5), (0.866, -0.5)])),
    "star": _polygon(_centred(_star_vertices(), 1.0)),
    "cross": _polygon(
        [
            (-0.3, 0.9),
            (0.3, 0.9),
            (0.3, 0.3),
            (0.9, 0.3),
            (0.9, -0.3),
            (0.3, -0.3),
            (0.3, -0.9),
            (-0.3, -0.9),
            (-0.3, -0.3),
            (-0.9, -0.3),
            (-0.9, 0.3),
            (-0.3, 0.3),
        ]
    ),
    "heart": _heart,
    "diamond": _polygon([(0.0, 1.0), (0.72, 0.0), (0.0, -1.0), (-0.72, 0.0)]),
    "ring": _ring,
    "crescent": _crescent,
    "semicircle": _semicircle,
    # Not in SHAPES by default (too close to circle when small) but usable via ``shapes=``.
    "hexagon": _polygon([(np.cos(a), np.sin(a)) for a in np.arange(6) * np.pi / 3]),
    "pentagon": _polygon(
        _centred([(np.cos(a), np.sin(a)) for a in np.pi / 2 + np.arange(5) * 2 * np.pi / 5])
    ),
}
ALL_SHAPES: tuple[str, ...] = tuple(_SDF)


# ---------------------------------------------------------------- drawing


def _check_shape(shape: str) -> None:
    if shape not in _SDF:
        raise MMError(f"unknown shape {shape!r}; known shapes: {', '.join(ALL_SHAPES)}")


def _rgb(color: str | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(color, str):
        if color not in COLORS:
            raise MMError(f"unknown colour {color!r}; known colours: {', '.join(COLORS)}")
        return COLORS[color]
    r, g, b = (int(c) for c in color)
    return r, g, b


def _radius(size: str | float, image_size: int) -> float:
    if isinstance(size, str):
        if size not in SIZES:
            raise MMError(f"unknown size {size!r}; known sizes: {', '.join(SIZES)}")
        return SIZES[size] * image_size
    return float(size)


def _centre(
    position: str | tuple[float, float],
    radius: float,
    image_size: int,
    jitter: float,
    rng: np.random.Generator | None,
) -> tuple[float, float]:
    """Pixel centre (x, y) for a named position, with uniform jitter, kept inside the image."""
    s = float(image_size)
    if isinstance(position, str):
        lo, mid, hi = radius + 1.0, s / 2, s - radius - 1.0
        table = {
            "left": (lo, mid),
            "right": (hi, mid),
            "top": (mid, lo),
            "bottom": (mid, hi),
            "center": (mid, mid),
        }
        if position not in table:
            raise MMError(f"unknown position {position!r}; known positions: {', '.join(POSITIONS)}")
        cx, cy = table[position]
    else:
        cx, cy = float(position[0]), float(position[1])
    if rng is not None and jitter > 0:
        cx += rng.uniform(-jitter, jitter) * s
        cy += rng.uniform(-jitter, jitter) * s
    lo, hi = min(radius + 0.5, s / 2), max(s - radius - 0.5, s / 2)
    return float(np.clip(cx, lo, hi)), float(np.clip(cy, lo, hi))


def _backgrounds(
    n: int, image_size: int, background: str | Sequence[int] | None, rng: np.random.Generator
) -> np.ndarray:
    """[n, S, S, 3] float32 backgrounds: "noise" (default: random grey level + pixel noise),
    "plain" (mid grey) or an RGB tuple."""
    s = image_size
    if background is None or background == "noise":
        level = rng.uniform(70.0, 180.0, size=(n, 1, 1, 1)).astype(np.float32)
        noise = rng.normal(0.0, 6.0, size=(n, s, s, 1)).astype(np.float32)
        return np.broadcast_to(level + noise, (n, s, s, 3)).copy()
    rgb = (128, 128, 128) if background == "plain" else _rgb(background)  # type: ignore[arg-type]
    return np.broadcast_to(np.asarray(rgb, np.float32), (n, s, s, 3)).copy()


def _draw(
    canvas: np.ndarray, shape_names: Sequence[str], colors: np.ndarray, centres: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """Composite one shape per image onto ``canvas`` [n, S, S, 3] float32 (in place); returns uint8."""
    s = canvas.shape[1]
    grid = np.arange(s, dtype=np.float32) + 0.5  # pixel centres
    names = np.asarray(shape_names)
    for name in np.unique(names):
        idx = np.nonzero(names == name)[0]
        r = radii[idx, None, None].astype(np.float32)
        x = (grid[None, None, :] - centres[idx, 0, None, None]) / r
        y = -(grid[None, :, None] - centres[idx, 1, None, None]) / r  # y up
        cov = np.clip(0.5 - _SDF[str(name)](x, y) * r, 0.0, 1.0)[..., None]
        canvas[idx] = canvas[idx] * (1.0 - cov) + colors[idx, None, None, :] * cov
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def render_shape(
    shape: str,
    color: str | Sequence[int],
    size: str | float,
    position: str | tuple[float, float],
    image_size: int = 32,
    *,
    rng: np.random.Generator | None = None,
    background: str | Sequence[int] | None = None,
    centred: bool = False,
    jitter: float = 0.06,
) -> np.ndarray:
    """Draw one shape; returns an ``image_size × image_size × 3`` uint8 array.

    ``size`` is "small"/"large" or a radius in pixels; ``position`` a name of :data:`POSITIONS` or a
    pixel centre (x, y). ``rng`` adds position jitter and background noise (none without it: a
    plain grey background unless ``background`` says otherwise). ``centred`` ignores ``position``
    and jitter and draws at the image centre.
    """
    _check_shape(shape)
    rgb = _rgb(color)
    radius = _radius(size, image_size)
    if centred:
        position, jitter = "center", 0.0
    cx, cy = _centre(position, radius, image_size, jitter, rng)
    if rng is None and background is None:
        background = "plain"
    canvas = _backgrounds(1, image_size, background, rng if rng is not None else np.random.default_rng(0))
    return _draw(
        canvas,
        [shape],
        np.asarray([rgb], np.float32),
        np.asarray([[cx, cy]], np.float32),
        np.asarray([radius]),
    )[0]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _fields(shape: str, color: str, size: str, position: str) -> dict[str, str]:
    return {"shape": shape, "color": color, "size": size, "where": POSITION_PHRASES.get(position, ""),
            "a_size": _article(size), "a_color": _article(color)}


def shape_captions(shape: str, color: str, size: str, position: str) -> list[str]:
    """All caption variants for one image (see :data:`CAPTION_TEMPLATES`)."""
    fields = _fields(shape, color, size, position)
    return [" ".join(t.format(**fields).split()) for t in CAPTION_TEMPLATES]


#: The caption templates naming one attribute (and the shape): a concept's zero-shot prompts.
ATTRIBUTE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": ("{a_color} {color} {shape}", "a photo of {a_color} {color} {shape}"),
    "size": ("{a_size} {size} {shape}",),
    "position": ("a {shape} {where}",),
}


def attribute_prompts(attr: str, value: str, shapes: Sequence[str]) -> list[str]:
    """The captions that name attribute ``attr`` = ``value`` with each of ``shapes`` and nothing else
    (:data:`ATTRIBUTE_TEMPLATES`: "a red circle", "a circle on the left", ...): a class-agnostic prompt
    ensemble for the attribute value."""
    if attr not in ATTRIBUTE_TEMPLATES:
        raise MMError(f"no caption names attribute {attr!r} alone; attributes: {', '.join(ATTRIBUTE_TEMPLATES)}")
    out = []
    for s in shapes:
        fields = _fields(s, value if attr == "color" else "", value if attr == "size" else "",
                         value if attr == "position" else "")
        out += [" ".join(t.format(**fields).split()) for t in ATTRIBUTE_TEMPLATES[attr]]
    return out


def class_names(shapes: Sequence[str], colors: Sequence[str], classes: str = "shape") -> list[str]:
    """The class names of a shapes world: the shapes, or every "<colour> <shape>" (shape-major order: label
    ``shape_index * len(colors) + colour_index``)."""
    if classes not in CLASS_SCHEMES:
        raise MMError(f"unknown shapes class scheme {classes!r}; choose one of {', '.join(CLASS_SCHEMES)}")
    if classes == "shape":
        return list(shapes)
    return [f"{c} {s}" for s in shapes for c in colors]


def make_shapes(
    n: int,
    seed: int,
    image_size: int = 32,
    shapes: Sequence[str] = SHAPES,
    *,
    colors: Sequence[str] | None = None,
    sizes: Sequence[str] = ("small", "large"),
    positions: Sequence[str] = POSITIONS,
    centred: bool = False,
    fixed_size: bool = False,
    background: str | Sequence[int] | None = None,
    jitter: float = 0.06,
    name: str = "shapes",
    classes: str = "shape",
) -> ImageTextData:
    """``n`` synthetic shape images with captions, deterministic from ``seed``.

    Shapes are balanced (each appears ``n // len(shapes)`` or one more times, in shuffled order);
    colour, size and position are uniform. ``centred=True`` puts every shape at the centre without
    jitter; ``fixed_size=True`` draws every shape "large"; ``background`` is None/"noise" (default),
    "plain" or an RGB tuple. ``label`` is the index in ``shapes``; ``attrs`` holds
    shape/color/size/position. ``classes="shape_color"``: the label names the (shape, colour) pair
    (:func:`class_names`), the pairs balanced instead of the shapes; the default draws the same images as
    before the option existed.
    """
    shapes = list(shapes)
    if not shapes:
        raise MMError("make_shapes: shapes must not be empty")
    for s in shapes:
        _check_shape(s)
    color_names = list(colors) if colors is not None else list(COLORS)
    for c in color_names:
        _rgb(c)
    if fixed_size:
        sizes = ("large",)
    if centred:
        positions, jitter = ("center",), 0.0
    for sz in sizes:
        _radius(sz, image_size)

    classnames = class_names(shapes, color_names, classes)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classnames))
    col_idx = rng.integers(0, len(color_names), n)  # drawn in both schemes: the later draws stay the same
    shape_idx = labels
    if classes == "shape_color":
        shape_idx, col_idx = np.divmod(labels, len(color_names))
    size_idx = rng.integers(0, len(sizes), n)
    pos_idx = rng.integers(0, len(positions), n)
    jit = rng.uniform(-jitter, jitter, size=(n, 2)) * image_size if jitter > 0 else np.zeros((n, 2))

    radii = np.asarray([_radius(sizes[i], image_size) for i in size_idx], np.float32)
    centres = np.empty((n, 2), np.float32)
    for k in range(n):
        cx, cy = _centre(positions[pos_idx[k]], float(radii[k]), image_size, 0.0, None)
        lo, hi = min(radii[k] + 0.5, image_size / 2), max(image_size - radii[k] - 0.5, image_size / 2)
        centres[k] = np.clip((cx + jit[k, 0], cy + jit[k, 1]), lo, hi)
    rgb = np.asarray([COLORS[color_names[i]] for i in col_idx], np.float32)
    names = [shapes[i] for i in shape_idx]

    images = np.empty((n, image_size, image_size, 3), np.uint8)
    for c, start in enumerate(range(0, n, _CHUNK)):
        sl = slice(start, min(start + _CHUNK, n))
        # One generator per fixed-size chunk: the noise depends only on (seed, chunk).
        bg = _backgrounds(sl.stop - sl.start, image_size, background, np.random.default_rng([seed, c]))
        images[sl] = _draw(bg, names[sl], rgb[sl], centres[sl], radii[sl])

    records = []
    for k in range(n):
        attrs = {
            "shape": names[k],
            "color": color_names[col_idx[k]],
            "size": sizes[size_idx[k]],
            "position": positions[pos_idx[k]],
        }
        records.append(
            ImageTextRecord(
                id=f"{name}-{seed}-{k:06d}",
                captions=shape_captions(attrs["shape"], attrs["color"], attrs["size"], attrs["position"]),
                label=int(labels[k]),
                image=images[k],
                attrs=attrs,
            )
        )
    return ImageTextData(name=name, records=records, classnames=classnames, templates=list(TEMPLATES))
