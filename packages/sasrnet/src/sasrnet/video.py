"""Features of one video, extracted on the fly with the encoders the training features used."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mmcore.errors import DataError, MMError


def video_item(video: str | Path, info: dict[str, Any], needs_av: bool = True) -> dict[str, Any]:
    """``{"audio": [S,128], "visual": [S,C,H,W]}`` for ``video`` (empty when ``needs_av`` is False).

    ``info`` is a checkpoint's model.json: its ``features`` entry (the training features'
    features.json) names the visual/audio encoders, fps and step count to reproduce."""
    import numpy as np
    import torch
    from mmcore.avqa.feature_data import segment_indices
    from mmcore.avqa.feature_extraction import VIDEO_EXTS, extract_features, load_video_features

    video = Path(video)
    if not video.is_file():
        raise DataError(video, "video file not found")
    if not needs_av:
        return {}
    meta = info.get("features")
    if not isinstance(meta, dict) or "visual" not in meta:
        raise MMError(f"the checkpoint does not record how its features were extracted (no features.json in "
                      f"{info.get('features_dir')}); cannot extract matching features for {video}")
    suffix = video.suffix.lower() if video.suffix.lower() in VIDEO_EXTS else ".mp4"
    with tempfile.TemporaryDirectory(prefix="mm-predict-") as tmp:
        vids = Path(tmp) / "videos"
        vids.mkdir()
        (vids / f"clip{suffix}").symlink_to(video.resolve())
        try:
            extract_features(vids, Path(tmp) / "features", visual=meta["visual"], audio=meta["audio"],
                             fps=float(meta.get("fps", 1.0)), n_steps=meta.get("n_steps"),
                             image_size=meta.get("image_size"), progress=False)
            audio, visual = load_video_features(Path(tmp) / "features", "clip")
        except DataError as e:
            if e.path is None or tmp not in str(e.path):
                raise
            raise DataError(video, e.problem) from None  # name the user's file, not the temporary link
    expected = info["model_config"]["visual_channels"]
    if visual.shape[1] != expected:
        raise DataError(video, f"extracted visual features have {visual.shape[1]} channels, the model expects {expected}")
    s = info["n_segments"]
    a = np.ascontiguousarray(audio[segment_indices(len(audio), s)], dtype=np.float32)
    v = np.ascontiguousarray(visual[segment_indices(len(visual), s)], dtype=np.float32)
    return {"audio": torch.from_numpy(a), "visual": torch.from_numpy(v)}
