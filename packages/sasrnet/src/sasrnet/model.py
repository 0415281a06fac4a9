"""SaSR-Net (Yang et al., EMNLP 2024 Findings) and the two baselines sharing its input pipeline.

    question ──LSTM──► q ─────────────────────────────────────────────┐
    audio [T,128] ─MLP─► A ─┐                                          │
    visual [T,C,H,W] ─pool─► V ─┴─► SaSR module (22 source tokens) ──► A'', V''
    A''_t guides spatial attention over the grid of frame t ─────────► v*_t
    q guides temporal attention over {A''_t} and {v*_t} ──► h_a, h_v ─► fusion ⊙ q ─► answer

``kind="avst"`` is ST-AVQA (Li et al., CVPR 2022): the same network without the SaSR module
(A'' = A, V'' = V). ``kind="blind"`` sees only the question and measures answer bias.
Shapes: B batch, T segments, K source tokens, D model width, N = H*W grid cells.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcore.checkpoint import count_parameters  # noqa: F401  (re-exported for the recipes)

from sasrnet.config import ModelConfig
from sasrnet.registry import avqa_model_spec
from sasrnet.sasr import SaSRModule

# ---------------------------------------------------------------------------------------------
# question and audio encoders


class QuestionEncoder(nn.Module):
    """Embedding → tanh → 1-layer LSTM → tanh(concat(h, c)) → Linear(2D → D)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)  # no padding_idx: the public code trains the <pad> row too
        self.lstm = nn.LSTM(dim, dim, num_layers=1, batch_first=True)
        self.fc = nn.Linear(2 * dim, dim)

    def forward(self, words: torch.Tensor) -> torch.Tensor:  # [B, L] -> [B, D]
        x = torch.tanh(self.embed(words))
        _, (h, c) = self.lstm(x)
        return self.fc(torch.tanh(torch.cat([h[-1], c[-1]], dim=-1)))


class AudioEmbed(nn.Module):
    """fc2(ReLU(fc1(a))): 128 → D → D per segment."""

    def __init__(self, audio_dim: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(audio_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(a)))


# ---------------------------------------------------------------------------------------------
# grounding and temporal attention (ST-AVQA heads)


class TemporalAttention(nn.Module):
    """h = LN(x + FFN(x)) with x = MHA(query=q, key/value=segments): the question picks segments."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.attn(q[:, None], seq, seq, need_weights=True)  # w: [B, 1, T] (head-averaged)
        h = h[:, 0]
        return self.norm(h + self.drop(self.ffn(h))), w[:, 0]


class ConvStem(nn.Module):
    """Per-frame adapter for low-level grids (e.g. the ``pixels`` encoder's per-cell RGB mean/std):
    3x3 conv (C → D, optionally strided) → GELU → 1x1 conv (D → D), plus a learned position embedding per cell.

    The paper's ResNet-18 maps are already non-linear, context-aware features; a 6-channel pixel-stat
    grid is not: a per-cell *linear* projection followed by the spatial mean (the pooled frame feature)
    only sees the frame's 6 global colour statistics, and nothing says where a cell is, so "which
    instrument is in the video" and left/middle/right are both invisible. The stem fixes both."""

    def __init__(self, channels: int, dim: int, grid_h: int, grid_w: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, dim, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        n_cells = ((grid_h - 1) // stride + 1) * ((grid_w - 1) // stride + 1)
        self.pos = nn.Parameter(torch.randn(n_cells, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,T,C,H,W] -> [B,T,H*W,D]
        b, t = x.shape[:2]
        h = self.conv2(F.gelu(self.conv1(x.flatten(0, 1))))
        h = h.flatten(2).transpose(1, 2)  # [B*T, N, D]
        if h.shape[1] != self.pos.shape[0]:
            raise ValueError(f"visual grid has {h.shape[1]} cells, the model was built for {self.pos.shape[0]}")
        return (h + self.pos).view(b, t, *h.shape[1:])


class AVQAModel(nn.Module):
    """SaSR-Net (``kind="sasrnet"``), AVST (``"avst"``) or the question-only model (``"blind"``).

    Batches hold each distinct video once (``audio`` [U,T,A], ``visual`` [U,T,C,H,W], ``video_index`` [B]
    maps questions to rows) and, for the match loss, ``visual_neg`` [U,T,C,H,W]: per video, frames of other
    videos. Optional input standardisation: buffers ``audio_mean/std``, ``visual_mean/std`` (identity
    unless :meth:`set_input_stats` is called; the paper uses none)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        spec = avqa_model_spec(cfg.kind)  # which parts this kind has: video streams, source tokens
        self.uses_video = spec.uses_video
        d = cfg.dim
        self.question = QuestionEncoder(cfg.word_vocab, d)
        if self.uses_video:
            self.audio = AudioEmbed(cfg.audio_dim, d)
            self.register_buffer("audio_mean", torch.zeros(cfg.audio_dim))
            self.register_buffer("audio_std", torch.ones(cfg.audio_dim))
            self.register_buffer("visual_mean", torch.zeros(cfg.visual_channels))
            self.register_buffer("visual_std", torch.ones(cfg.visual_channels))
            self._standardize = False  # the statistics are the identity until set (or loaded) otherwise
            self.register_load_state_dict_post_hook(lambda m, _keys: m._update_standardize())
            if cfg.visual_stem == "conv":
                self.visual_proj = ConvStem(cfg.visual_channels, d, cfg.grid_h, cfg.grid_w, cfg.stem_stride)
            elif cfg.visual_stem == "linear":
                # the paper's features are 512-channel like the model; other grids are projected to D
                self.visual_proj = nn.Identity() if cfg.visual_channels == d else nn.Linear(cfg.visual_channels, d)
            else:
                raise ValueError(f"unknown visual_stem {cfg.visual_stem!r} (linear | conv)")
            if cfg.negative_pass not in ("full", "reuse_audio"):
                raise ValueError(f"unknown negative_pass {cfg.negative_pass!r} (full | reuse_audio)")
            self.sasr = SaSRModule(d, cfg.n_sources, cfg.n_segments, cfg.depth, cfg.heads, cfg.mlp_ratio,
                                   cfg.drop_path, cfg.token_mlp_hidden, cfg.gumbel_tau,
                                   gate=cfg.sasr_gate) if spec.source_tokens else None
            self.ground = nn.Linear(2 * d, d)  # v*_t = fc(tanh([V''_t ; g_t]))
            self.match = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d // 2), nn.ReLU(),
                                       nn.Linear(d // 2, d // 4), nn.ReLU(), nn.Linear(d // 4, 2))
            self.temporal_a = TemporalAttention(d, cfg.temporal_heads, cfg.dropout)
            self.temporal_v = TemporalAttention(d, cfg.temporal_heads, cfg.dropout)
            self.fusion = nn.Linear(2 * d, d)
        if cfg.multiple_choice:
            self.choice_proj = nn.Linear(d, d)  # score_c = <W z, q_enc(choice_c)>
        else:
            self.answer = nn.Linear(d, cfg.n_answers)

    def _grounding(self, a: torch.Tensor, v: torch.Tensor, f: torch.Tensor, out: dict | None = None) -> torch.Tensor:
        """Audio-guided spatial attention: a [B,T,D] weighs the N cells of f [B,T,N,D] (the grid with each
        cell's feature L2-normalised: F_t) per segment. ``out``: the weights are kept there as "spatial" [B,T,N]
        (B: the rows of ``a``, one per video in :meth:`forward`)."""
        alpha = torch.softmax(f @ F.normalize(a, dim=-1)[..., None], dim=2)  # [B, T, N, 1]
        if out is not None:
            out["spatial"] = alpha.squeeze(-1)
        g = (alpha.transpose(2, 3) @ f).squeeze(2)  # the alpha-weighted sum of cells, as one matmul
        return self.ground(torch.tanh(torch.cat([v, g], dim=-1)))

    @torch.no_grad()
    def set_input_stats(self, audio_mean, audio_std, visual_mean, visual_std) -> None:
        """Per-channel statistics of the training features (std floored, so a constant channel stays finite)."""
        for name, val in (("audio_mean", audio_mean), ("audio_std", audio_std), ("visual_mean", visual_mean),
                          ("visual_std", visual_std)):
            buf = getattr(self, name)
            val = torch.as_tensor(val, dtype=buf.dtype).reshape(buf.shape)
            buf.copy_(val.clamp_min(1e-3) if name.endswith("std") else val)
        self._update_standardize()

    @torch.no_grad()
    def _update_standardize(self) -> None:
        """Standardise only where the statistics are not the identity: (x - 0) / 1 over the paper-size
        visual grid cost ~10 % of an evaluation forward."""
        if self.uses_video:
            self._standardize = bool((self.audio_mean != 0).any() or (self.audio_std != 1).any()
                                     or (self.visual_mean != 0).any() or (self.visual_std != 1).any())

    @torch.no_grad()
    def set_answer_prior(self, counts: torch.Tensor) -> None:
        """Answer-classifier bias = log of the training answers' frequencies (weights unchanged): the model
        starts out predicting the answer prior."""
        if self.cfg.multiple_choice:
            raise ValueError("a multiple-choice head has no answer bias")
        counts = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1.0)
        if counts.shape != self.answer.bias.shape:
            raise ValueError(f"{len(counts)} answer counts for {self.answer.bias.shape[0]} answers")
        self.answer.bias.copy_((counts / counts.sum()).log().to(self.answer.bias.dtype))

    def _frames(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[U,T,C,H,W] -> pooled frame features [U,T,D] and L2-normalised cells [U,T,N,D]."""
        if self._standardize:
            visual = (visual - self.visual_mean[:, None, None]) / self.visual_std[:, None, None]
        if isinstance(self.visual_proj, ConvStem):
            grid = self.visual_proj(visual)
        else:
            grid = self.visual_proj(visual.flatten(3).transpose(2, 3))
        return grid.mean(2), F.normalize(grid, dim=-1)

    def _audio(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio((audio - self.audio_mean) / self.audio_std if self._standardize else audio)

    def _streams(self, a: torch.Tensor, v: torch.Tensor, seeds: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """A'', V'' (SaSR-Net: through the SaSR module; AVST: A, V as they are) and the SaSR outputs."""
        if self.sasr is None:
            return a, v, {}
        s = self.sasr(a, v, seeds if self.training else None)
        return s["a"], s["v"], s

    # the parameters (and input statistics) that grounding pre-training trains and saves
    GROUNDING_PREFIXES = ("audio.", "audio_", "visual_", "ground.", "match.")

    def grounding_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ST-AVQA's grounding pre-training path: match logits of positive and negative frames, computed
        as in :meth:`forward` without the question, the temporal attention and the SaSR module."""
        if not self.uses_video:
            raise ValueError("the question-only model has no audio-visual grounding")
        a = self._audio(batch["audio"])
        out = {}
        for key, name in (("visual", "match_pos"), ("visual_neg", "match_neg")):
            v, cells = self._frames(batch[key])
            out[name] = self.match(torch.cat([a, self._grounding(a, v, cells)], -1))
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if batch.get("grounding_only"):
            return self.grounding_forward(batch)
        q = self.question(batch["question"])
        out: dict[str, torch.Tensor] = {}
        if not self.uses_video:
            z = torch.tanh(q)
        else:
            # everything up to the question-guided temporal attention depends only on the video: it runs
            # once per distinct video of the batch, then each question takes its video's row
            rows = batch.get("video_index")
            if rows is None:
                rows = torch.arange(q.shape[0], device=q.device)
            seeds = batch.get("noise_seed")
            a = self._audio(batch["audio"])  # [U, T, D]
            v, cells = self._frames(batch["visual"])
            a2, v2, s = self._streams(a, v, None if seeds is None else 2 * seeds)
            if s:
                out.update({k: s[k][rows] for k in ("a_prob", "v_prob", "assign_a", "assign_v")})
                out["cls_logits"] = s["cls_logits"]
            v_star = self._grounding(a2, v2, cells, out)  # out["spatial"]: per video, as A'' below
            out["audio_stream"] = a2  # A'' (AVST: A) per video [U, T, D], for sasrnet.diagnostics
            if "visual_neg" in batch:
                # negatives: other videos' frames with this video's audio. "full" (published): the whole
                # network, the SaSR module included, runs again on them; "reuse_audio" keeps the positive
                # pass's A'' (cheaper, but the negative's audio then carries the positive frames' regrouping)
                v_n, cells_n = self._frames(batch["visual_neg"])
                if self.sasr is not None and self.cfg.negative_pass == "full":
                    a2_n, v2_n, _ = self._streams(a, v_n, None if seeds is None else 2 * seeds + 1)
                elif self.sasr is not None:
                    noise = None if seeds is None or not self.training else 2 * seeds + 1
                    a2_n, v2_n = a2, self.sasr.visual_only(v_n, noise)
                else:
                    a2_n, v2_n = a, v_n
                out["match_neg"] = self.match(torch.cat([a2_n, self._grounding(a2_n, v2_n, cells_n)], -1))[rows]
                out["match_pos"] = self.match(torch.cat([a2, v_star], -1))[rows]  # [B, T, 2]
            a2, v_star = a2[rows], v_star[rows]
            h_a, w_a = self.temporal_a(q, a2)
            h_v, w_v = self.temporal_v(q, v_star)
            out["temporal_a"], out["temporal_v"] = w_a, w_v
            f = self.fusion(torch.tanh(torch.cat([h_a + a2.mean(1), h_v + v_star.mean(1)], -1)))
            z = torch.tanh(f * q)
        if self.cfg.multiple_choice:
            choices = batch["choices"]  # [B, 4, L]
            c = self.question(choices.flatten(0, 1)).view(*choices.shape[:2], -1)
            out["logits"] = (c @ self.choice_proj(z)[..., None]).squeeze(-1)
        else:
            out["logits"] = self.answer(z)
        return out


def match_loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """2-way CE of the match head over every segment: positive frames -> 1, other videos' frames -> 0."""
    pos, neg = out["match_pos"].flatten(0, 1), out["match_neg"].flatten(0, 1)
    target = torch.cat([torch.ones(len(pos), dtype=torch.long), torch.zeros(len(neg), dtype=torch.long)])
    return F.cross_entropy(torch.cat([pos, neg]), target.to(pos.device))


def compute_loss(cfg: ModelConfig, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """L = CE(answer) + w_match·L_match + w_source·(BCE(v_prob) + BCE(a_prob)) + w_cls·CE(cls(S), 0..K-1)."""
    terms = {"answer": F.cross_entropy(out["logits"], batch["answer"])}
    if "match_pos" in out:
        terms["match"] = match_loss(out)
    if "v_prob" in out:
        y = batch["sources"].to(out["v_prob"].dtype)
        terms["source"] = F.binary_cross_entropy(out["v_prob"].clamp(1e-6, 1 - 1e-6), y) + F.binary_cross_entropy(
            out["a_prob"].clamp(1e-6, 1 - 1e-6), y)
        k = out["cls_logits"].shape[0]
        terms["cls"] = F.cross_entropy(out["cls_logits"], torch.arange(k, device=out["cls_logits"].device))
    weights = {"answer": 1.0, "match": cfg.w_match, "source": cfg.w_source, "cls": cfg.w_cls}
    terms["loss"] = sum(weights[k] * v for k, v in terms.items())
    return terms


def build_model(cfg: ModelConfig) -> nn.Module:
    """The registered model ``cfg.kind`` (:mod:`sasrnet.registry`) built from ``cfg``."""
    return avqa_model_spec(cfg.kind).build(cfg)

