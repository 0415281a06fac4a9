"""Audio encoders: a waveform → one 128-d vector per step (one step per second by default, as ST-AVQA).

Specs for :func:`create_audio_encoder`:

* ``logmel`` — 64-band log-mel (25 ms windows, 10 ms hop, torchaudio transforms); each step is summarised
  by the mean and the standard deviation of every band over its frames → 64 × 2 = 128-d. No weights.
* ``vggish:PATH`` — VGGish in torch (the torchvggish layout: ``features.*``, ``embeddings.*`` and optionally
  ``pproc.pca_eigen_vectors`` / ``pproc.pca_means``), weights from a local ``.safetensors`` or ``.pth``
  file (loaded with weights_only=True). Each step's example is the 0.96 s (96 frames of 64 log-mel bands,
  125–7500 Hz, log(mel + 0.01)) starting at the step; with PCA parameters the embedding is PCA-whitened and
  clipped to [-2, 2] (the reference post-processing without its 8-bit quantisation). The front end follows
  the reference's parameters with torchaudio's filters, so values are close to, not bit-equal with, TF VGGish.

The number of steps is ``round(duration / step_s)`` (at least 1): AAC priming samples or a last partial
frame do not add a step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mmcore.errors import DataError, MMError

if TYPE_CHECKING:
    import numpy as np
    import torch

AUDIO_DIM = 128


@runtime_checkable
class AudioEncoder(Protocol):
    spec: str
    out_dim: int
    sample_rate: int

    def __call__(self, wave: np.ndarray, sample_rate: int, *, step_s: float = 1.0) -> torch.Tensor: ...


def n_audio_steps(n_samples: int, sample_rate: int, step_s: float = 1.0) -> int:
    """Number of steps for a waveform: ``round(duration / step_s)``, at least 1."""
    return max(1, math.floor(n_samples / (sample_rate * step_s) + 0.5))


def _prepare(wave: Any, sample_rate: int, target_rate: int) -> torch.Tensor:
    import torch
    import torchaudio.functional as AF

    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.ndim == 2:  # [channels, samples] → mono
        x = x.mean(0)
    if x.ndim != 1:
        raise MMError(f"audio must be a 1-D waveform (or [channels, samples]), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise MMError("empty waveform")
    if sample_rate != target_rate:
        x = AF.resample(x, int(sample_rate), int(target_rate))
    return x


class LogMelEncoder:
    """Mean and std over each step of a 64-band log-mel spectrogram → ``[T, 128]``."""

    def __init__(self, n_mels: int = 64, sample_rate: int = 16000):
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.hop = sample_rate // 100  # 10 ms
        self.out_dim = 2 * n_mels
        self.spec = "logmel"

    def __call__(self, wave: Any, sample_rate: int, *, step_s: float = 1.0) -> torch.Tensor:
        import torch

        from mmcore.media import log_mel

        x = _prepare(wave, sample_rate, self.sample_rate)
        steps = n_audio_steps(x.numel(), self.sample_rate, step_s)
        lm = log_mel(x, self.sample_rate, self.n_mels, n_fft=self.sample_rate // 40,
                     hop_length=self.hop)  # [n_mels, F]; 25 ms windows
        per_step = step_s * self.sample_rate / self.hop
        n_frames = lm.shape[1]
        out = torch.empty(steps, self.out_dim)
        for k in range(steps):
            a = min(int(round(k * per_step)), n_frames - 1)
            b = max(a + 1, min(int(round((k + 1) * per_step)), n_frames))
            seg = lm[:, a:b]
            out[k, : self.n_mels] = seg.mean(1)
            out[k, self.n_mels:] = seg.std(1, correction=0)
        return out


# --------------------------------------------------------------------------- VGGish


def _vggish_net() -> Any:
    import torch.nn as nn

    class VGGish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 1
            for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                    c_in = int(v)
            self.features = nn.Sequential(*layers)
            self.embeddings = nn.Sequential(
                nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True), nn.Linear(4096, 4096), nn.ReLU(True),
                nn.Linear(4096, 128), nn.ReLU(True),
            )

        def forward(self, x):  # x: [B, 1, 96 frames, 64 bands]
            x = self.features(x)
            # flatten in TF's NHWC order so converted TF weights line up
            x = x.permute(0, 2, 3, 1).contiguous().flatten(1)
            return self.embeddings(x)

    return VGGish()


class VGGishEncoder:
    """VGGish embeddings, one 0.96 s example per step → ``[T, 128]``."""

    def __init__(self, weights: str | Path, *, device: str = "cpu"):
        import torch

        from mmcore.io import load_safetensors, torch_load_safe

        path = Path(weights)
        if not path.is_file():
            raise DataError(path, "VGGish weights file not found")
        sd = load_safetensors(path) if path.suffix == ".safetensors" else torch_load_safe(path)
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise DataError(path, "not a state dict of tensors")
        self.pca_vectors = sd.pop("pproc.pca_eigen_vectors", sd.pop("pca_eigen_vectors", None))
        self.pca_means = sd.pop("pproc.pca_means", sd.pop("pca_means", None))
        self.net = _vggish_net()
        own = self.net.state_dict()
        bad = sorted(set(own) ^ set(sd)) + [k for k in own if k in sd and own[k].shape != sd[k].shape]
        if bad:
            raise DataError(path, f"not VGGish weights (mismatched keys/shapes, e.g. {bad[:3]})")
        self.net.load_state_dict(sd)
        self.net.eval().to(device)
        self.device = device
        self.sample_rate = 16000
        self.out_dim = AUDIO_DIM
        self.spec = f"vggish:{path}"

    def examples(self, x: torch.Tensor, steps: int, step_s: float) -> torch.Tensor:
        """``[steps, 1, 96, 64]`` log-mel examples starting at each step (zero-padded past the end)."""
        import torch

        from mmcore.media import log_mel

        hop, win = 160, 96
        per_step = step_s * self.sample_rate / hop
        need = int(round((steps - 1) * per_step)) + win  # frames needed for the last example
        n_samples = (need - 1) * hop + 512
        if x.numel() < n_samples:
            x = torch.nn.functional.pad(x, (0, n_samples - x.numel()))
        lm = log_mel(x, self.sample_rate, 64, n_fft=512, win_length=400, hop_length=hop, f_min=125.0, f_max=7500.0,
                     power=1.0, mel_scale="htk", center=False, eps=0.01).T  # [F, 64]
        starts = [int(round(k * per_step)) for k in range(steps)]
        return torch.stack([lm[s:s + win] for s in starts]).unsqueeze(1)

    def __call__(self, wave: Any, sample_rate: int, *, step_s: float = 1.0) -> torch.Tensor:
        import torch

        x = _prepare(wave, sample_rate, self.sample_rate)
        steps = n_audio_steps(x.numel(), self.sample_rate, step_s)
        with torch.inference_mode():
            emb = self.net(self.examples(x, steps, step_s).to(self.device)).cpu()
            if self.pca_vectors is not None and self.pca_means is not None:
                emb = (emb - self.pca_means.reshape(1, -1)) @ self.pca_vectors.T
                emb = emb.clamp(-2.0, 2.0)
        return emb


def save_random_vggish(path: str | Path, seed: int = 0) -> Path:
    """Write seeded random VGGish weights (tests and offline smoke runs; 288 MB)."""
    import torch

    from mmcore.io import save_safetensors

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _vggish_net()
    return save_safetensors(path, net.state_dict())


AUDIO_SPECS = ("logmel", "vggish:PATH")


def create_audio_encoder(spec: str, *, device: str = "cpu") -> AudioEncoder:
    """Build an audio encoder from a spec string (see the module docstring)."""
    name, sep, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "logmel" and not sep:
        return LogMelEncoder()
    if name == "vggish" and arg:
        return VGGishEncoder(arg, device=device)
    raise MMError(f"unknown audio encoder spec {spec!r}; expected one of: {', '.join(AUDIO_SPECS)}")
