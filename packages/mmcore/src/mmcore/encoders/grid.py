"""Image encoders that keep a spatial grid: frames → ``[N, C, h, w]`` feature maps (ST-AVQA's visual input).

Specs for :func:`create_grid_encoder`:

=============================  =============================================================  ==============
spec                           what                                                           grid / C
=============================  =============================================================  ==============
``pixels`` / ``pixels:G``      mean and std of the RGB values in each cell (no weights;       14x14 (GxG), 6
                               the cheap offline default for the synthetic AVQA world)
``resnet18:PATH``              torchvision ResNet-18 layer-4 map, weights from a local        14x14 @224, 512
                               ``.safetensors`` / ``.pth`` (loaded with weights_only=True);
                               layer 4 with stride 1 as in ST-AVQA
``resnet18-random``            the same network with seeded random weights (tests, offline)  14x14 @224, 512
``clip:DIR_OR_NAME[@PRETR]``   open_clip ViT patch tokens projected to the joint embedding    size/patch, D
                               space (a saved mmcore CLIP dir, or a model name + tag/file)    (tiny: 4x4, 128)
=============================  =============================================================  ==============

Every encoder takes uint8 frames ``[N, H, W, 3]`` (numpy or torch) or float ``[N, 3, H, W]`` in [0, 1],
resizes them to ``image_size`` (square, as ST-AVQA) and normalises them itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mmcore.errors import DataError, MMError

if TYPE_CHECKING:
    import torch

# ST-AVQA's frame normalisation for ResNet-18 (see docs/music-avqa-format.md)
STAVQA_MEAN = (0.43216, 0.394666, 0.37645)
STAVQA_STD = (0.22803, 0.22145, 0.216989)


@runtime_checkable
class GridEncoder(Protocol):
    spec: str
    image_size: int
    out_channels: int
    grid: tuple[int, int]

    def __call__(self, frames: Any) -> torch.Tensor: ...


def to_float_frames(frames: Any, image_size: int, device: str = "cpu") -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in [0, 1] → float ``[N, 3, S, S]`` in [0, 1] on ``device``."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(frames)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise MMError(f"frames must be [N,H,W,3] uint8 or [N,3,H,W] float, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise MMError(f"uint8 frames must be [N,H,W,3], got shape {tuple(x.shape)}")
        x = x.to(device).permute(0, 3, 1, 2)  # a channels-last view
        if x.shape[-2:] != (image_size, image_size):
            # resize while still uint8: torch's vectorised uint8 kernel is far faster than the float one on CPU
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        return x.float().div_(255.0).contiguous()
    else:
        if x.shape[1] != 3:
            raise MMError(f"float frames must be [N,3,H,W], got shape {tuple(x.shape)}")
        x = x.to(device=device, dtype=torch.float32)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _normalise(x: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    import torch

    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


# --------------------------------------------------------------------------- pixels


class PixelGridEncoder:
    """Per cell of a GxG grid: mean and standard deviation of R, G, B (6 channels). No weights, ~free."""

    def __init__(self, grid: int = 14, image_size: int | None = None, device: str = "cpu"):
        if grid <= 0:
            raise MMError(f"pixels grid must be positive, got {grid}")
        self.grid = (grid, grid)
        self.image_size = image_size or grid * 8
        if self.image_size % grid:
            raise MMError(f"pixels: image_size {self.image_size} is not a multiple of the grid {grid}")
        self.out_channels = 6
        self.device = device
        self.spec = f"pixels:{grid}"

    def __call__(self, frames: Any) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        x = to_float_frames(frames, self.image_size, self.device)
        k = self.image_size // self.grid[0]
        mean = F.avg_pool2d(x, k)
        var = (F.avg_pool2d(x * x, k) - mean * mean).clamp_min_(0.0)
        return torch.cat([mean, var.sqrt_()], dim=1)


# --------------------------------------------------------------------------- ResNet-18


def _resnet18_trunk(stride1: bool) -> Any:
    import torch.nn as nn
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    if stride1:
        # ST-AVQA: layer 4 without its stride → 14x14 maps at 224 px instead of 7x7
        net.layer4[0].conv1.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    net.fc = nn.Identity()
    return net


def _load_resnet_weights(net: Any, path: Path) -> None:
    from mmcore.io import load_safetensors, torch_load_safe

    if not path.is_file():
        raise DataError(path, "ResNet-18 weights file not found")
    sd = load_safetensors(path) if path.suffix == ".safetensors" else torch_load_safe(path)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise DataError(path, "not a state dict of tensors")
    sd = {k.removeprefix("module.").removeprefix("model."): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # classifier head is unused
    own = net.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise DataError(path, f"not ResNet-18 weights: {len(missing)} missing keys (e.g. {missing[:2]}), "
                              f"{len(unexpected)} unexpected keys (e.g. {unexpected[:2]})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        raise DataError(path, f"not ResNet-18 weights: shape mismatch for {bad[:3]}")
    net.load_state_dict(sd, strict=False)


class ResNet18GridEncoder:
    """torchvision ResNet-18 up to layer 4 → ``[N, 512, h, w]`` (14x14 at 224 px with ``stride1``)."""

    def __init__(self, weights: str | Path | None = None, *, image_size: int = 224, stride1: bool = True,
                 seed: int = 0, device: str = "cpu"):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # "resnet18-random" is the same network in every process
            self.net = _resnet18_trunk(stride1)
        if weights is not None:
            _load_resnet_weights(self.net, Path(weights))
        self.net.eval().to(device)
        self.device = device
        self.image_size = int(image_size)
        side = -(-self.image_size // (16 if stride1 else 32))
        self.grid = (side, side)
        self.out_channels = 512
        self.spec = f"resnet18:{weights}" if weights is not None else "resnet18-random"

    def __call__(self, frames: Any) -> torch.Tensor:
        import torch

        n = self.net
        x = _normalise(to_float_frames(frames, self.image_size, self.device), STAVQA_MEAN, STAVQA_STD)
        with torch.inference_mode():
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            return n.layer4(n.layer3(n.layer2(n.layer1(x))))


# --------------------------------------------------------------------------- CLIP ViT


class ClipGridEncoder:
    """open_clip ViT patch tokens (after ``ln_post``, projected by ``proj``) reshaped to ``[N, D, g, g]``."""

    def __init__(self, model: str, pretrained: str | None = None, *, device: str = "cpu"):
        from mmcore.encoders.clip import load_clip

        bundle = load_clip(model, pretrained, device=device)
        visual = bundle.model.visual
        if not hasattr(visual, "conv1") or not hasattr(visual, "output_tokens"):
            raise MMError(f"clip:{model}: patch grids need an open_clip VisionTransformer, got {type(visual).__name__}")
        visual.output_tokens = True
        if getattr(visual, "final_ln_after_pool", False) or getattr(visual, "attn_pool", None) is not None:
            raise MMError(f"clip:{model}: this ViT variant pools before ln_post; its patch tokens are not supported")
        self.visual = visual.eval()
        self.device = device
        self.image_size = int(bundle.image_size)
        patch = visual.conv1.kernel_size[0]
        side = self.image_size // patch
        self.grid = (side, side)
        proj = getattr(visual, "proj", None)
        self.out_channels = int(proj.shape[1]) if proj is not None else int(visual.conv1.out_channels)
        pp = getattr(visual, "preprocess_cfg", None) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        self.mean = tuple(pp.get("mean", OPENAI_DATASET_MEAN))
        self.std = tuple(pp.get("std", OPENAI_DATASET_STD))
        self.spec = f"clip:{model}" + (f"@{pretrained}" if pretrained else "")

    def __call__(self, frames: Any) -> torch.Tensor:
        import torch

        x = _normalise(to_float_frames(frames, self.image_size, self.device), self.mean, self.std)
        with torch.inference_mode():
            _, tokens = self.visual(x)  # [N, g*g, width]
            if getattr(self.visual, "proj", None) is not None:
                tokens = tokens @ self.visual.proj
        n, n_tokens, d = tokens.shape
        g = self.grid
        if n_tokens != g[0] * g[1]:  # e.g. extra register tokens
            tokens = tokens[:, -g[0] * g[1]:]
        return tokens.transpose(1, 2).reshape(n, d, g[0], g[1]).contiguous()


# --------------------------------------------------------------------------- factory


GRID_SPECS = ("pixels[:G]", "resnet18:PATH", "resnet18-random", "clip:DIR_OR_NAME[@PRETRAINED]")


def create_grid_encoder(spec: str, *, device: str = "cpu", image_size: int | None = None) -> GridEncoder:
    """Build a grid encoder from a spec string (see the module docstring)."""
    name, sep, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "pixels":
        try:
            grid = int(arg) if sep else 14
        except ValueError:
            raise MMError(f"bad visual encoder spec {spec!r}: pixels:G needs an integer grid size") from None
        return PixelGridEncoder(grid, image_size=image_size, device=device)
    if name == "resnet18-random" and not sep:
        return ResNet18GridEncoder(None, image_size=image_size or 224, device=device)
    if name == "resnet18" and arg:
        return ResNet18GridEncoder(arg, image_size=image_size or 224, device=device)
    if name == "clip" and arg:
        model, _, pretrained = arg.partition("@")
        if image_size is not None:
            raise MMError("clip grid encoders use the model's own image size")
        return ClipGridEncoder(model, pretrained or None, device=device)
    raise MMError(f"unknown visual encoder spec {spec!r}; expected one of: {', '.join(GRID_SPECS)}")
