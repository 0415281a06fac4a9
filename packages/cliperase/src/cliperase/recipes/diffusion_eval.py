"""Diffusion evaluation of an unlearned CLIP text encoder (`mm unlearn diffusion-eval`).

For each forget and retain prompt, N images are generated at fixed seeds with the ORIGINAL and with
the UNLEARNED text tower plugged into the same pipeline (same UNet, same noise). A detector that is
not the unlearned model (the pipeline's trained shape detector, or the original CLIP zero-shot)
decides whether the prompt's concept is present; the original CLIP also gives a CLIP score.
Outputs: ``metrics.json`` and ``grid.png`` (rows: prompts; columns: original | unlearned).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mmcore.config import save_config
from mmcore.errors import ConfigError
from mmcore.io import prepare_output_dir, read_json, write_json

from cliperase.diffusion.data import OTHER_CLASS


@dataclass
class DiffusionEvalConfig:
    original: str = ""  # original CLIP model dir (or open_clip name)
    unlearned: str = ""  # unlearned CLIP model dir
    pipeline: str = ""  # `mm diffusion pretrain` dir, a diffusers dir or a hub id
    forget_prompts: list[str] = field(default_factory=list)
    retain_prompts: list[str] = field(default_factory=list)  # empty: "a {class}" for each other detector class
    n_per_prompt: int = 16
    num_inference_steps: int = 30
    guidance_scale: float = 2.0
    height: int = 0  # 0: the pipeline's default (ignored by the shapes pipeline)
    width: int = 0
    # "auto" (the pipeline's detector/ if any, else "clip") | "clip" | "color" (the shape's colour, for colour
    # concepts: cliperase.diffusion.detector.ColorDetector over the pipeline's colours) | a detector dir
    detector: str = "auto"
    classes: list[str] = field(default_factory=list)  # class names for the CLIP zero-shot detector
    grid_images: int = 8  # images per prompt shown in grid.png
    device: str = "cpu"
    num_threads: int = 0  # >0: torch.set_num_threads
    seed: int = 0


def concept_of(prompt: str, classnames: Sequence[str]) -> str:
    """The class name a prompt asks for (whole-word match; the longest wins, so 'semicircle' ≠ 'circle')."""
    found = [c for c in classnames if c != OTHER_CLASS and re.search(rf"\b{re.escape(c)}\b", prompt, re.IGNORECASE)]
    if not found:
        raise ConfigError(
            f"prompt {prompt!r} names none of the detector's classes ({', '.join(c for c in classnames if c != OTHER_CLASS)})"
        )
    return max(found, key=len)


def _load_detector(cfg: DiffusionEvalConfig, original_bundle: Any, prompts: list[str]) -> tuple[Any, str]:
    from cliperase.diffusion.detector import DETECTOR_DIR, ClipZeroShotDetector, ColorDetector, ShapeDetector

    if cfg.detector == "color":
        from mmcore.data.shapes import COLORS

        pipe_cfg = Path(cfg.pipeline) / "config.json"
        colors = list(cfg.classes) or (read_json(pipe_cfg).get("colors") if pipe_cfg.is_file() else None) or list(COLORS)
        return ColorDetector(colors), "color"
    if cfg.detector not in ("auto", "clip"):
        return ShapeDetector.load(cfg.detector), "shape-cnn"
    local = Path(cfg.pipeline) / DETECTOR_DIR
    if cfg.detector == "auto" and (local / "config.json").is_file():
        return ShapeDetector.load(local), "shape-cnn"
    classes = list(cfg.classes)
    if not classes:
        raise ConfigError("the CLIP zero-shot detector needs class names: pass --classes (e.g. circle,square,...)")
    return ClipZeroShotDetector(original_bundle, classes), "clip-zero-shot"


def run_diffusion_eval(
    original_dir: str | Path,
    unlearned_dir: str | Path,
    pipeline_dir: str | Path,
    forget_prompts: Sequence[str],
    retain_prompts: Sequence[str] | None,
    out_dir: str | Path,
    n_per_prompt: int = 16,
    *,
    num_inference_steps: int = 30,
    guidance_scale: float = 2.0,
    seed: int = 0,
    overwrite: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Library entry point (used by ``mm demo``): builds a :class:`DiffusionEvalConfig` and runs it."""
    cfg = DiffusionEvalConfig(
        original=str(original_dir), unlearned=str(unlearned_dir), pipeline=str(pipeline_dir),
        forget_prompts=list(forget_prompts), retain_prompts=list(retain_prompts or []), n_per_prompt=n_per_prompt,
        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed, **kwargs,
    )
    return diffusion_eval(cfg, out_dir, overwrite=overwrite)


def diffusion_eval(cfg: DiffusionEvalConfig, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Generate with the original and the unlearned text encoder; detection rates, CLIP scores, grid.png."""
    from mmcore.distributed import torch_threads

    with torch_threads(cfg.num_threads):
        return _diffusion_eval(cfg, out_dir, overwrite=overwrite)


def _diffusion_eval(cfg: DiffusionEvalConfig, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Generate with both encoders, detect, score; write ``metrics.json``, ``grid.png``, ``config.json``."""
    import torch
    from mmcore.encoders.clip import load_clip

    from cliperase.diffusion.detector import clip_score
    from cliperase.diffusion.pipeline import (
        encode_prompts,
        generate,
        load_pipeline,
        swap_text_encoder,
        text_tower_from_clip,
    )

    for name in ("original", "unlearned", "pipeline"):
        if not getattr(cfg, name):
            raise ConfigError(f"{name}: required (pass --{name})")
    if not cfg.forget_prompts:
        raise ConfigError("forget_prompts: give at least one prompt naming the forgotten concept")
    if cfg.n_per_prompt < 1:
        raise ConfigError("n_per_prompt must be >= 1")
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    save_config(cfg, out / "config.json")
    t0 = time.time()

    original = load_clip(cfg.original)
    pipe = load_pipeline(cfg.pipeline, device=cfg.device, text_components=False)
    te_orig, tok_orig = text_tower_from_clip(cfg.original)
    te_unl, tok_unl = text_tower_from_clip(cfg.unlearned)
    # Check both fit the UNet before spending time generating.
    pipe_te, pipe_tok = getattr(pipe, "text_encoder", None), getattr(pipe, "tokenizer", None)
    swap_text_encoder(pipe, te_unl, tok_unl, source=f"{cfg.unlearned} (unlearned)")
    swap_text_encoder(pipe, te_orig, tok_orig, source=f"{cfg.original} (original)")

    # Does the pipeline's own encoder equal the original? (True for a `mm diffusion pretrain` dir built on it.)
    matches = None
    if pipe_te is not None and pipe_tok is not None and pipe_te.config.hidden_size == te_orig.config.hidden_size:
        with torch.no_grad():
            try:
                a = encode_prompts(pipe_te, pipe_tok, ["a photo of a circle"], pipe.device)
                b = encode_prompts(te_orig, tok_orig, ["a photo of a circle"], pipe.device)
                matches = bool(a.shape == b.shape and torch.allclose(a, b, atol=1e-4))
            except Exception:  # different tokenizers/lengths: just "unknown"
                matches = None

    detector, det_kind = _load_detector(cfg, original, list(cfg.forget_prompts) + list(cfg.retain_prompts))
    classnames = list(detector.classnames)
    forget_concepts = [concept_of(p, classnames) for p in cfg.forget_prompts]
    retain = list(cfg.retain_prompts) or [f"a {c}" for c in classnames if c != OTHER_CLASS and c not in forget_concepts]
    prompts = [(p, "forget") for p in cfg.forget_prompts] + [(p, "retain") for p in retain]

    gen_kw = dict(num_inference_steps=cfg.num_inference_steps, guidance_scale=cfg.guidance_scale,
                  height=cfg.height or None, width=cfg.width or None)
    images: dict[str, list[np.ndarray]] = {}
    for which, (te, tok) in (("before", (te_orig, tok_orig)), ("after", (te_unl, tok_unl))):
        swap_text_encoder(pipe, te, tok)
        images[which] = [generate(pipe, p, cfg.n_per_prompt, cfg.seed, **gen_kw) for p, _ in prompts]

    rows = []
    for k, (p, split) in enumerate(prompts):
        concept = concept_of(p, classnames)
        ci = classnames.index(concept)
        row: dict[str, Any] = {"prompt": p, "split": split, "concept": concept}
        for which in ("before", "after"):
            probs = detector.predict(images[which][k])
            pred = probs.argmax(1)
            row[f"detection_{which}"] = float((pred == ci).mean())
            row[f"concept_prob_{which}"] = float(probs[:, ci].mean())
            row[f"predicted_{which}"] = {classnames[j]: int((pred == j).sum()) for j in range(len(classnames)) if (pred == j).any()}
            row[f"clip_score_{which}"] = float(clip_score(original, images[which][k], p).mean())
        rows.append(row)

    metrics: dict[str, Any] = {"detector": det_kind, "classes": classnames, "n_per_prompt": cfg.n_per_prompt,
                               "pipeline_encoder_matches_original": matches}
    for split in ("forget", "retain"):
        sel = [r for r in rows if r["split"] == split]
        for which in ("before", "after"):
            metrics[f"{split}_detection_{which}"] = float(np.mean([r[f"detection_{which}"] for r in sel])) if sel else None
            metrics[f"{split}_clip_score_{which}"] = float(np.mean([r[f"clip_score_{which}"] for r in sel])) if sel else None
    per_concept: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = per_concept.setdefault(r["concept"], {"split": r["split"], "before": [], "after": []})
        d["before"].append(r["detection_before"])
        d["after"].append(r["detection_after"])
    for d in per_concept.values():
        d["detection_before"], d["detection_after"] = float(np.mean(d.pop("before"))), float(np.mean(d.pop("after")))
        d["shift"] = d["detection_after"] - d["detection_before"]
    metrics["per_concept"] = per_concept
    shifts = [abs(d["shift"]) for d in per_concept.values() if d["split"] == "retain"]
    metrics["max_retain_detection_shift"] = max(shifts) if shifts else None
    metrics["prompts"] = rows
    metrics["seconds"] = round(time.time() - t0, 1)
    write_json(out / "metrics.json", metrics)
    save_grid(out / "grid.png", prompts, images, rows, cfg.grid_images)
    return metrics


def save_grid(
    path: str | Path,
    prompts: list[tuple[str, str]],
    images: dict[str, list[np.ndarray]],
    rows: list[dict[str, Any]],
    per_row: int = 8,
) -> Path:
    """PNG: one row per prompt (forget first), left the original encoder's images, right the unlearned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def strip(imgs: np.ndarray) -> np.ndarray:
        imgs = imgs[:per_row]
        h = imgs.shape[1]
        rep = max(1, 48 // h)  # nearest-neighbour upscaling keeps tiny images visible
        imgs = imgs.repeat(rep, 1).repeat(rep, 2)
        pad = np.ones((imgs.shape[0], imgs.shape[1], 2, 3), dtype=imgs.dtype)
        return np.concatenate([np.concatenate([im, p], 1) for im, p in zip(imgs, pad, strict=True)], 1)

    n = len(prompts)
    fig, axes = plt.subplots(n, 2, figsize=(2 * max(3.0, 0.6 * per_row), 0.8 * n + 0.8), squeeze=False)
    for k, (p, split) in enumerate(prompts):
        for j, which in enumerate(("before", "after")):
            ax = axes[k, j]
            ax.imshow(strip(images[which][k]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{rows[k]['concept']} detected {100 * rows[k][f'detection_{which}']:.0f}%", fontsize=7, labelpad=1)
            if j == 0:
                ax.set_ylabel(f"[{split}]\n{p}", fontsize=7, rotation=0, ha="right", va="center")
            if k == 0:
                ax.set_title("original text encoder" if which == "before" else "unlearned text encoder", fontsize=9)
    fig.tight_layout()
    import io

    from mmcore.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())  # a kill never leaves half a PNG


def format_summary(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a console table: one per concept."""
    return [
        {"concept": c, "split": d["split"], "before": d["detection_before"], "after": d["detection_after"], "shift": d["shift"]}
        for c, d in metrics["per_concept"].items()
    ]

