"""Training diagnostics: does the model use the video? Logged once per epoch by the training recipe.

On a fixed set of validation questions (eval mode), :func:`diagnostics` measures
- the attention entropy over segments (question-guided temporal attention, audio and visual) and over grid
  cells (audio-guided spatial attention), each divided by its uniform value log T or log N: 1.0 is flat;
- cos(A''_t, A''_0): how alike the audio stream's segments are after the SaSR module (1.0: one vector for
  the whole clip), beside the same for the audio embedding before it, and both streams' norms;
- the norm of the answer loss's gradient reaching the audio and the visual input features;
- the match head on coherent negatives (each clip's audio with another whole clip's frames, in order):
  the share of positive and of negative segments it classifies right.
:func:`module_grad_norms` gives the gradient norm of each block after a training step's backward.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def entropy_ratio(w: torch.Tensor) -> float:
    """Mean entropy of the distributions along the last axis of ``w``, over log(n): 1.0 = uniform."""
    n = w.shape[-1]
    h = -(w.clamp_min(1e-12).log() * w).sum(-1)
    return float(h.mean() / math.log(n)) if n > 1 else 1.0


def module_grad_norms(model: torch.nn.Module) -> dict[str, float]:
    """L2 norm of the gradients per block: each top-level module, and each part of the SaSR module (one host
    transfer for all of them, not one per parameter)."""
    keys, squares = [], []
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        parts = name.split(".")
        keys.append(".".join(parts[:2]) if parts[0] == "sasr" and len(parts) > 2 else parts[0])
        squares.append(p.grad.detach().float().pow(2).sum())
    sq: dict[str, float] = {}
    for k, v in zip(keys, torch.stack(squares).tolist() if squares else [], strict=True):
        sq[k] = sq.get(k, 0.0) + v
    return {k: math.sqrt(v) for k, v in sorted(sq.items())}


def _mean_cos_to_first(x: torch.Tensor) -> float:
    """Mean over t > 0 of cos(x_t, x_0) for x [B, T, D]."""
    return float(F.cosine_similarity(x[:, 1:], x[:, :1], dim=-1).mean())


def diagnostics(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """The measurements above on ``batch`` (collated, on the model's device, >= 2 distinct videos).
    The model is put back in the mode it was in; nothing in it changes."""
    if not getattr(model, "uses_video", True):
        return {}
    was_training = model.training
    model.eval()
    try:
        audio = batch["audio"].detach().clone().requires_grad_(True)
        visual = batch["visual"].detach().clone().requires_grad_(True)
        # coherent negatives: each video row gets the next row's whole clip of frames
        run = {**batch, "audio": audio, "visual": visual, "visual_neg": batch["visual"].roll(1, dims=0)}
        out = model(run)
        loss = F.cross_entropy(out["logits"], batch["answer"])
        g_a, g_v = torch.autograd.grad(loss, [audio, visual])
        with torch.no_grad():  # spatial attention and A'' come per video: weighted per question like the rest
            rows = batch["video_index"]
            a_in, a2, spatial = model._audio(batch["audio"])[rows], out["audio_stream"][rows], out["spatial"][rows]
            pos = out["match_pos"].softmax(-1)[..., 1]
            neg = out["match_neg"].softmax(-1)[..., 1]
            d = {
                "temporal_entropy_v": entropy_ratio(out["temporal_v"]),
                "temporal_entropy_a": entropy_ratio(out["temporal_a"]),
                "temporal_max_v": float(out["temporal_v"].max(-1).values.mean()),
                "spatial_entropy": entropy_ratio(spatial),
                "cos_audio_stream_t0": _mean_cos_to_first(a2),
                "cos_audio_embed_t0": _mean_cos_to_first(a_in),
                "norm_audio_stream": float(a2.norm(dim=-1).mean()),
                "norm_audio_embed": float(a_in.norm(dim=-1).mean()),
                "grad_norm_audio_input": float(g_a.norm()),
                "grad_norm_visual_input": float(g_v.norm()),
                "match_acc_pos": float((pos > 0.5).float().mean()),
                "match_acc_coherent_neg": float((neg < 0.5).float().mean()),
                "answer_acc": float((out["logits"].argmax(-1) == batch["answer"]).float().mean()),
            }
            sasr = getattr(model, "sasr", None)
            if sasr is not None and sasr.gate_a is not None:
                d["gate_a"], d["gate_v"] = float(sasr.gate_a), float(sasr.gate_v)
    finally:
        model.train(was_training)
    return {k: round(v, 6) for k, v in d.items()}
