"""Feature extraction for audio-visual QA in ST-AVQA's layout (what SaSR-Net and AVST read)::

    OUT/audio/<video_id>.npy    [T, 128]      float32   (one step per 1/fps seconds)
    OUT/visual/<video_id>.npy   [T, C, h, w]  float32   (a grid encoder's map of the frame at each step's centre)
    OUT/features.json           encoders, fps, shapes, counts, skipped videos

``T`` is ``round(duration * fps)`` per video, or ``n_steps`` for every video (ST-AVQA: fps=1, 60 steps);
shorter audio or video is padded by repeating its last step, longer is cut. Each file is written
atomically (temporary file + rename), audio first, so a killed run leaves no half file and a rerun
skips the videos whose two files exist (resumable). The default visual encoder is ``pixels``
(14x14 grid, 6 channels: per-cell RGB mean and std; no weights, milliseconds per video), because the
synthetic AVQA world tells instruments apart by look and position and the AVQA benchmark must extract a
few hundred videos within minutes on 2 CPU cores (measured: ~0.1 s per 10 s clip on a busy machine);
``resnet18:PATH`` (512x14x14, ~0.1-0.2 s per frame on 2 CPU cores) reproduces ST-AVQA's real-data features.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmcore.distributed import torch_threads
from mmcore.errors import DataError, MMError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "st-avqa-features/1"
META_FILE = "features.json"
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
# settings that must match for a rerun to add to an existing feature directory
_RESUME_KEYS = ("visual", "audio", "fps", "n_steps", "image_size")


@dataclass
class FeatureConfig:
    """``mm avqa extract-features`` options (resolved with mmcore.config.resolve_config)."""

    videos: str = ""
    out: str = ""
    visual: str = "pixels"
    audio: str = "logmel"
    fps: float = 1.0
    n_steps: int | None = None
    batch_size: int = 64
    image_size: int | None = None
    backend: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    # videos decoded ahead in parallel (threads: see decoded_videos); None: from the CPU count
    # (mmcore.data.loading.default_num_workers), 0: one by one
    num_workers: int | None = None
    skip_bad: bool = False
    overwrite: bool = False


def list_videos(videos_dir: str | Path) -> list[Path]:
    """Video files in ``videos_dir`` (or in its ``videos/`` subfolder, as `mm avqa synth` writes them), sorted."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise DataError(root, "videos directory not found")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if not found and (root / "videos").is_dir():
        return list_videos(root / "videos")
    if not found:
        raise DataError(root, f"no video files ({', '.join('*' + e for e in VIDEO_EXTS)})")
    return found


def fit_steps(x: np.ndarray, steps: int) -> np.ndarray:
    """Cut ``x`` to ``steps`` rows, or pad it by repeating its last row (ST-AVQA's padding)."""
    import numpy as np

    if len(x) >= steps:
        return x[:steps]
    return np.concatenate([x, np.repeat(x[-1:], steps - len(x), axis=0)])


def _save_npy(path: Path, arr: np.ndarray) -> None:
    import numpy as np

    from mmcore.io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32))
    atomic_write_bytes(path, buf.getvalue())


def _decode(path: Path, fps: float, backend: str) -> tuple[np.ndarray, np.ndarray]:
    from mmcore.media import read_audio, read_frames

    # audio first: a video without an audio stream fails before the (costlier) frame decoding
    wave = read_audio(path, sample_rate=16000)
    frames = read_frames(path, fps=fps, backend=backend)
    return frames, wave


def _decode_or_problem(path: Path, fps: float, backend: str) -> tuple[Any, tuple[str, str] | None]:
    try:
        return _decode(path, fps, backend), None
    except DataError as e:
        return None, (str(e.path), e.problem)


def decoded_videos(paths: list[Path], fps: float, backend: str, num_workers: int | None) -> Iterator[Any]:
    """(frames, wave) or (None, (path, problem)) per video, in order, decoded ``num_workers`` videos at a
    time ahead of the caller (None: from the CPU count; 0: one by one in this thread). Close it
    (``contextlib.closing``) when stopping early: the videos in flight are then dropped.

    The workers are threads, not DataLoader processes: decord and PyAV decode in FFmpeg with the GIL
    released, so threads run in parallel, and forked workers deadlock in a process that has decoded
    with decord before (FFmpeg's threads), while forkserver / spawn workers cost seconds of start-up
    per call."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from mmcore.data.loading import default_num_workers

    workers = default_num_workers() if num_workers is None else num_workers
    if workers == 0:
        for p in paths:
            yield _decode_or_problem(p, fps, backend)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead: deque[Any] = deque()
        todo = iter(paths)
        try:
            for p in todo:
                ahead.append(pool.submit(_decode_or_problem, p, fps, backend))
                if len(ahead) > workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for f in ahead:
                f.cancel()


def _encode(frames: np.ndarray, wave: np.ndarray, visual: Any, audio: Any, fps: float, n_steps: int | None,
            batch_size: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    import torch

    steps = n_steps or len(frames)
    frames = fit_steps(frames[:steps], steps)
    vis = torch.cat([visual(frames[i:i + batch_size]).float().cpu() for i in range(0, len(frames), batch_size)])
    aud = audio(wave, 16000, step_s=1.0 / fps).float().cpu()
    v, a = fit_steps(vis.numpy(), steps), fit_steps(aud.numpy(), steps)
    if not (np.isfinite(v).all() and np.isfinite(a).all()):
        raise DataError(path, "encoder produced non-finite features")
    return v, a


def _check_existing(out: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Prepare ``out``; return the previous run's metadata when resuming into it."""
    from mmcore.io import prepare_output_dir, read_json

    meta_path = out / META_FILE
    if overwrite or not out.exists() or not any(out.iterdir()):
        prepare_output_dir(out, overwrite=overwrite)
        return None
    if not meta_path.is_file():
        raise MMError(f"{out}: output directory is not empty and holds no {META_FILE}; "
                      "pass --overwrite to replace it")
    old = read_json(meta_path)
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise DataError(meta_path, f"not a feature directory of format {FORMAT}")
    diff = {k: (old.get(k), settings[k]) for k in _RESUME_KEYS if old.get(k) != settings[k]}
    if diff:
        what = ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
        raise MMError(f"{out}: features were extracted with {what}; pass --overwrite to re-extract")
    return old


def extract_features(
    videos_dir: str | Path,
    out_dir: str | Path,
    *,
    visual: str = "pixels",
    audio: str = "logmel",
    fps: float = 1.0,
    n_steps: int | None = None,
    batch_size: int = 64,
    image_size: int | None = None,
    backend: str = "auto",
    device: str = "cpu",
    threads: int | None = None,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Extract per-video audio and visual-grid features (see the module docstring); returns features.json's content.

    ``threads``: torch CPU threads while extracting; None = 1 for the weightless ``pixels`` encoder (its
    tensors are tiny, and intra-op threads only add spin-waiting: ~20x slower on a busy 2-core machine),
    torch's default otherwise. ``num_workers``: video decoding workers (:func:`decoded_videos`).

    A bad video (truncated, corrupt, no audio stream) raises :class:`DataError`, or with ``skip_bad`` is
    skipped and listed under ``bad`` in features.json. Features already written are never lost.
    """

    from mmcore.encoders.audio import create_audio_encoder
    from mmcore.encoders.grid import create_grid_encoder
    from mmcore.io import write_json
    from mmcore.media import _resolve_backend

    if fps <= 0:
        raise MMError(f"fps must be positive, got {fps}")
    if n_steps is not None and n_steps <= 0:
        raise MMError(f"n_steps must be positive, got {n_steps}")
    if batch_size <= 0:
        raise MMError(f"batch_size must be positive, got {batch_size}")
    out = Path(out_dir)
    videos = list_videos(videos_dir)
    backend = _resolve_backend(backend)
    venc = create_grid_encoder(visual, device=device, image_size=image_size)
    aenc = create_audio_encoder(audio, device=device)
    settings = {"visual": visual, "audio": audio, "fps": float(fps), "n_steps": n_steps, "image_size": image_size}
    _check_existing(out, settings, overwrite)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "visual").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        **settings,
        "visual_encoder": venc.spec,
        "audio_encoder": aenc.spec,
        "visual_shape": [venc.out_channels, *venc.grid],
        "audio_dim": aenc.out_dim,
        "sample_rate": 16000,
        "backend": backend,
        "videos_dir": str(Path(videos_dir).resolve()),
        "complete": False,
    }
    write_json(out / META_FILE, meta)  # written first, so a rerun after a kill can check its settings
    if threads is None and venc.spec.startswith("pixels") and device == "cpu":
        threads = 1
    with torch_threads(threads):
        return _run(videos, out, meta, venc, aenc, fps, n_steps, batch_size, backend, skip_bad, progress, num_workers)


def _done(out: Path, video: Path) -> bool:
    """Both feature files of a video exist (each is written atomically, audio first)."""
    return (out / "audio" / f"{video.stem}.npy").is_file() and (out / "visual" / f"{video.stem}.npy").is_file()


def _run(videos: list[Path], out: Path, meta: dict[str, Any], venc: Any, aenc: Any, fps: float,
         n_steps: int | None, batch_size: int, backend: str, skip_bad: bool, progress: bool | None,
         num_workers: int | None) -> dict[str, Any]:
    from mmcore.distributed import progress_bar
    from mmcore.io import write_json

    todo = [p for p in videos if not _done(out, p)]
    bad: list[dict[str, str]] = []
    steps_seen: list[int] = []
    t0 = time.perf_counter()
    with progress_bar(len(todo), "extract features", disable=None if progress is None else not progress) as advance, \
            closing(decoded_videos(todo, fps, backend, num_workers)) as videos_decoded:
        for path, (decoded, problem) in zip(todo, videos_decoded, strict=True):
            try:
                if problem is not None:
                    raise DataError(*problem)
                v, a = _encode(*decoded, venc, aenc, fps, n_steps, batch_size, path)
            except DataError as e:
                if not skip_bad:
                    raise
                bad.append({"video": path.name, "error": e.problem})
                advance(1, bad=len(bad))
                continue
            _save_npy(out / "audio" / f"{path.stem}.npy", a)
            _save_npy(out / "visual" / f"{path.stem}.npy", v)
            steps_seen.append(len(v))
            advance(1, bad=len(bad))
    meta.update({
        "complete": True,
        "n_videos": len(videos),
        "n_extracted": len(steps_seen),
        "n_existing": len(videos) - len(todo),
        "n_bad": len(bad),
        "bad": bad,
        "n_done": sum(_done(out, p) for p in videos),
        "steps_min": min(steps_seen) if steps_seen else None,
        "steps_max": max(steps_seen) if steps_seen else None,
        "seconds": round(time.perf_counter() - t0, 3),
    })
    write_json(out / META_FILE, meta)
    return meta


def load_video_features(feature_dir: str | Path, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """``(audio [T,128], visual [T,C,h,w])`` of one video, with clear errors for missing or misshapen files."""
    import numpy as np

    root = Path(feature_dir)
    out = []
    for kind, ndim in (("audio", 2), ("visual", 4)):
        p = root / kind / f"{video_id}.npy"
        if not p.is_file():
            raise DataError(p, f"{kind} feature file not found")
        try:
            x = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(p, f"not a valid .npy file ({e})") from None
        if x.ndim != ndim:
            raise DataError(p, f"expected a {ndim}-D {kind} array, got shape {x.shape}")
        out.append(x)
    if len(out[0]) != len(out[1]):
        raise DataError(root, f"{video_id}: audio has {len(out[0])} steps but visual has {len(out[1])}")
    return out[0], out[1]
