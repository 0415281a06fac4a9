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

from sasrnet.config import ModelConfig

# ---------------------------------------------------------------------------------------------
# question and audio encoders


class QuestionEncoder(nn.Module):
    """Embedding → tanh → 1-layer LSTM → tanh(concat(h, c)) → Linear(2D → D)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
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
# SaSR module: transformer blocks over [segments ; source tokens] and hard grouping


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out or dim))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop_path(self.attn(h, h, h, need_weights=False)[0])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossAttention(nn.Module):
    """Pre-norm cross-attention returning only the update (callers add the residual)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(kv)
        return self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]


def hard_assignment(logits: torch.Tensor, tau: float, training: bool, noise_seed: torch.Tensor | None) -> torch.Tensor:
    """One-hot assignment of each segment to a source token over the token axis (dim 1 of [B, K, T]).

    Training: hard Gumbel-softmax with a straight-through gradient. Eval: argmax.
    ``noise_seed`` [B] draws each sample's Gumbel noise from its own generator, so the noise of a
    sample does not depend on how a batch is split over processes (1- vs 2-process equality)."""
    if training:
        if noise_seed is None:
            u = torch.rand_like(logits)
        else:
            u = torch.stack([
                torch.rand(logits.shape[1:], generator=torch.Generator().manual_seed(int(s)), dtype=logits.dtype)
                for s in noise_seed.tolist()
            ]).to(logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-9, 1 - 1e-9)))
        soft = F.softmax((logits + gumbel) / tau, dim=1)
    else:
        soft = F.softmax(logits, dim=1)
    hard = F.one_hot(soft.argmax(dim=1), logits.shape[1]).transpose(1, 2).to(soft.dtype)  # [B, K, T]
    return hard - soft.detach() + soft  # value: one-hot; gradient: the softmax's


class GroupingBlock(nn.Module):
    """MGN / GroupViT grouping: source tokens gather the segments hard-assigned to them.

    tokens += tokenMLP over the token axis (K → hidden → K); tokens += CrossAttn(tokens, segments);
    each segment is assigned to one token; a group = mean of its segments (projected) + its token."""

    def __init__(self, dim: int, n_tokens: int, hidden: int, heads: int, mlp_ratio: float, tau: float):
        super().__init__()
        self.tau = tau
        self.norm_tokens = nn.LayerNorm(dim)
        self.token_mlp = Mlp(n_tokens, hidden, n_tokens)
        self.norm_x = nn.LayerNorm(dim)
        self.pre_assign = CrossAttention(dim, heads)
        self.norm_post = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, noise_seed: torch.Tensor | None = None):
        # x [B, T, D] segments, tokens [B, K, D] -> groups [B, K, D], assignment [B, K, T]
        x = self.norm_x(x)
        t = self.norm_tokens(tokens)
        t = t + self.token_mlp(t.transpose(1, 2)).transpose(1, 2)
        t = t + self.pre_assign(t, x)
        t = self.norm_post(t)
        logits = self.q(t) @ self.k(x).transpose(1, 2) / x.shape[-1] ** 0.5  # [B, K, T]
        assign = hard_assignment(logits, self.tau, self.training, noise_seed)
        # mean of the assigned segments; an empty group is just its token
        groups = (assign @ self.v(x)) / (assign.sum(-1, keepdim=True) + 1.0)
        groups = t + self.proj(groups)
        return groups + self.mlp(self.norm_out(groups)), assign


class SaSRModule(nn.Module):
    """Source-aware semantic representations: K shared learnable source tokens, per modality
    ``depth`` pre-norm blocks over [segments ; tokens], grouping into per-source embeddings G,
    then each segment attends to the groups (V'' = V' + CrossAttn(V', G_v); A'' likewise)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k = cfg.dim, cfg.n_sources
        self.tokens = nn.Parameter(torch.zeros(k, d))  # the paper initialises the source tokens to zero
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.v_blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, p) for p in dpr)
        self.a_blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, p) for p in dpr)
        group = dict(dim=d, n_tokens=k, hidden=cfg.token_mlp_hidden, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
                     tau=cfg.gumbel_tau)
        self.v_group = GroupingBlock(**group)
        self.a_group = GroupingBlock(**group)
        self.a_regroup = CrossAttention(d, cfg.heads)  # audio segments softly regrouped by the visual ones
        self.v_back = CrossAttention(d, cfg.heads)
        self.a_back = CrossAttention(d, cfg.heads)
        self.v_presence = nn.Linear(d, 1)
        self.a_presence = nn.Linear(d, 1)
        self.cls = nn.Linear(d, k)  # token i must predict source i
        if cfg.visual_group not in ("segments", "cells"):
            raise ValueError(f"unknown visual_group {cfg.visual_group!r} (segments | cells)")
        self.group_cells = cfg.visual_group == "cells"
        if cfg.sasr_init == "zero":
            self.zero_init_residuals()
        elif cfg.sasr_init != "default":
            raise ValueError(f"unknown sasr_init {cfg.sasr_init!r} (default | zero)")

    @torch.no_grad()
    def zero_init_residuals(self) -> None:
        """Zero the last layer of every residual branch that writes into the segment stream (the blocks'
        attention and MLP outputs, v_back / a_back): the module then returns A'' = A, V'' = V exactly, so
        SaSR-Net starts as AVST and the source-token branches grow from zero (zero-γ / ReZero style).
        Their out-projections still get gradients, so the branches start learning at the first step."""
        layers = [m for blk in (*self.v_blocks, *self.a_blocks) for m in (blk.attn.out_proj, blk.mlp[-1])]
        for m in (*layers, self.v_back.attn.out_proj, self.a_back.attn.out_proj):
            m.weight.zero_()
            m.bias.zero_()

    def _encode(self, x: torch.Tensor, blocks: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[1]
        h = torch.cat([x, self.tokens.expand(x.shape[0], -1, -1)], dim=1)
        for blk in blocks:
            h = blk(h)
        return h[:, :t], h[:, t:]

    def visual_branch(self, v: torch.Tensor, noise_seed: torch.Tensor | None = None, grid: torch.Tensor | None = None):
        """V', V'' = V' + CrossAttn(V', G_v), the groups G_v and the assignment. ``visual_group="segments"``
        (the paper): the blocks run over the T pooled segments, which are grouped. ``"cells"``: they run over
        the N cells of the time-averaged grid, which are grouped (where an instrument is, not when); V' = V."""
        if self.group_cells:
            if grid is None:
                raise ValueError("visual_group='cells' needs the visual grid")
            v1 = v
            h, v_tok = self._encode(grid.mean(1), self.v_blocks)
        else:
            v1, v_tok = self._encode(v, self.v_blocks)
            h = v1
        g_v, assign_v = self.v_group(h, v_tok, noise_seed)
        return v1, v1 + self.v_back(v1, g_v), g_v, assign_v

    def forward(self, a: torch.Tensor, v: torch.Tensor, noise_seed: torch.Tensor | None = None,
                grid: torch.Tensor | None = None) -> dict:
        v1, v2, g_v, assign_v = self.visual_branch(v, noise_seed, grid)
        a1, a_tok = self._encode(a, self.a_blocks)
        a_soft = a1 + self.a_regroup(v1, a1)  # query = visual segments, key/value = audio segments
        g_a, assign_a = self.a_group(a_soft, a_tok, None if noise_seed is None else noise_seed + 7919)
        return {
            "v": v2,
            "a": a1 + self.a_back(a1, g_a),
            "v_prob": torch.sigmoid(self.v_presence(g_v).squeeze(-1)),  # [B, K]
            "a_prob": torch.sigmoid(self.a_presence(g_a).squeeze(-1)),
            "cls_logits": self.cls(self.tokens),  # [K, K]
            "assign_v": assign_v,
            "assign_a": assign_a,
        }


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

    Inputs are standardised per channel with statistics of the TRAINING features (buffers
    ``audio_mean/std``, ``visual_mean/std``, saved with the weights; identity until :meth:`set_input_stats`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.question = QuestionEncoder(cfg.word_vocab, d)
        if cfg.kind != "blind":
            self.audio = AudioEmbed(cfg.audio_dim, d)
            self.register_buffer("audio_mean", torch.zeros(cfg.audio_dim))
            self.register_buffer("audio_std", torch.ones(cfg.audio_dim))
            self.register_buffer("visual_mean", torch.zeros(cfg.visual_channels))
            self.register_buffer("visual_std", torch.ones(cfg.visual_channels))
            if cfg.visual_stem == "conv":
                self.visual_proj = ConvStem(cfg.visual_channels, d, cfg.grid_h, cfg.grid_w, cfg.stem_stride)
            elif cfg.visual_stem == "linear":
                # the paper's features are 512-channel like the model; other grids are projected to D
                self.visual_proj = nn.Identity() if cfg.visual_channels == d else nn.Linear(cfg.visual_channels, d)
            else:
                raise ValueError(f"unknown visual_stem {cfg.visual_stem!r} (linear | conv)")
            self.sasr = SaSRModule(cfg) if cfg.kind == "sasrnet" else None
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

    def _grounding(self, a: torch.Tensor, v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Audio-guided spatial attention: a [B,T,D] weighs the N cells of f [B,T,N,D] (the grid with each
        cell's feature L2-normalised: F_t) per segment."""
        alpha = torch.softmax(f @ F.normalize(a, dim=-1)[..., None], dim=2)  # [B, T, N, 1]
        g = (alpha.transpose(2, 3) @ f).squeeze(2)  # the alpha-weighted sum of cells, as one matmul
        return self.ground(torch.tanh(torch.cat([v, g], dim=-1)))

    def _match_negatives(self, a: torch.Tensor, v: torch.Tensor, f: torch.Tensor, rows: torch.Tensor,
                         neg_rows: torch.Tensor) -> torch.Tensor:
        """Match logits [B, T, 2] of question i's audio (video rows[i]) against the frames of video
        neg_rows[i]. They depend only on that pair of videos, and the questions about one video share
        their partner, so each distinct pair is computed once and gathered back (same values and gradients)."""
        pair, inv = torch.unique(rows * a.shape[0] + neg_rows, return_inverse=True)
        pa, pn = pair // a.shape[0], pair % a.shape[0]
        v_neg = self._grounding(a[pa], v[pn], f[pn])
        return self.match(torch.cat([a[pa], v_neg], -1))[inv]

    @torch.no_grad()
    def set_input_stats(self, audio_mean, audio_std, visual_mean, visual_std) -> None:
        """Per-channel statistics of the training features (std floored, so a constant channel stays finite)."""
        for name, val in (("audio_mean", audio_mean), ("audio_std", audio_std), ("visual_mean", visual_mean),
                          ("visual_std", visual_std)):
            buf = getattr(self, name)
            val = torch.as_tensor(val, dtype=buf.dtype).reshape(buf.shape)
            buf.copy_(val.clamp_min(1e-3) if name.endswith("std") else val)

    @torch.no_grad()
    def set_answer_prior(self, counts: torch.Tensor) -> None:
        """Answer-classifier bias = log of the training answers' frequencies (weights unchanged): the model
        starts out predicting the answer prior, so early gradients do not have to learn that prior
        through whatever path grows fastest (in SaSR-Net: a sample-independent offset written by the
        source-token branches into A'' and V'', which drowned their audio-visual content)."""
        if self.cfg.multiple_choice:
            raise ValueError("a multiple-choice head has no answer bias")
        counts = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1.0)
        if counts.shape != self.answer.bias.shape:
            raise ValueError(f"{len(counts)} answer counts for {self.answer.bias.shape[0]} answers")
        self.answer.bias.copy_((counts / counts.sum()).log().to(self.answer.bias.dtype))

    def _grid(self, visual: torch.Tensor) -> torch.Tensor:  # [B,T,C,H,W] -> [B,T,H*W,D]
        visual = (visual - self.visual_mean[:, None, None]) / self.visual_std[:, None, None]
        if isinstance(self.visual_proj, ConvStem):
            return self.visual_proj(visual)
        return self.visual_proj(visual.flatten(3).transpose(2, 3))

    # the parameters (and input statistics) that grounding pre-training trains and saves
    GROUNDING_PREFIXES = ("audio.", "audio_", "visual_", "ground.", "match.")

    def grounding_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ST-AVQA's grounding pre-training path: match logits of positive and negative frames, computed
        as in :meth:`forward` without the question, the temporal attention and the SaSR module."""
        if self.cfg.kind == "blind":
            raise ValueError("the question-only model has no audio-visual grounding")
        rows = batch.get("video_index")
        a = self.audio((batch["audio"] - self.audio_mean) / self.audio_std)
        grid = self._grid(batch["visual"])
        if rows is not None:  # one question per video here: expand to the questions, nothing to save
            a, grid = a[rows], grid[rows]
        v_star = self._grounding(a, grid.mean(2), F.normalize(grid, dim=-1))
        grid_neg = grid[batch["neg_index"]] if "neg_index" in batch else self._grid(batch["visual_neg"])
        v_neg = self._grounding(a, grid_neg.mean(2), F.normalize(grid_neg, dim=-1))
        return {"match_pos": self.match(torch.cat([a, v_star], -1)), "match_neg": self.match(torch.cat([a, v_neg], -1))}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if batch.get("grounding_only"):
            return self.grounding_forward(batch)
        q = self.question(batch["question"])
        out: dict[str, torch.Tensor] = {}
        if self.cfg.kind == "blind":
            z = torch.tanh(q)
        else:
            # everything up to the question-guided temporal attention depends only on the video: it runs
            # once per distinct video of the batch (rows), then each question takes its video's row
            rows = batch.get("video_index")
            if rows is None:
                rows = torch.arange(q.shape[0], device=q.device)
            a = self.audio((batch["audio"] - self.audio_mean) / self.audio_std)  # [U, T, D]
            grid = self._grid(batch["visual"])
            v = grid.mean(2)  # pooled frame feature
            if self.sasr is not None:
                s = self.sasr(a, v, batch.get("noise_seed") if self.training else None, grid)
                a, v = s["a"], s["v"]
                out.update({k: s[k][rows] for k in ("a_prob", "v_prob", "assign_a", "assign_v")})
                out["cls_logits"] = s["cls_logits"]
            cells = F.normalize(grid, dim=-1)  # once per video: the positives and the in-batch negatives share it
            v_star = self._grounding(a, v, cells)
            if "visual_neg" in batch or "neg_index" in batch:
                # negatives: frames of another video; the audio stays, so the pair does not match
                if "neg_index" in batch:
                    # the partner is in this batch: its stem output and V'' (the same visual path as the
                    # positives, so "went through the SaSR module or not" gives the match head no shortcut)
                    out["match_neg"] = self._match_negatives(a, v, cells, rows, rows[batch["neg_index"]])
                else:
                    a_q = a[rows]
                    grid_neg = self._grid(batch["visual_neg"])
                    v_neg = grid_neg.mean(2)
                    if self.sasr is not None:
                        seed = batch.get("noise_seed") if self.training else None
                        v_neg = self.sasr.visual_branch(v_neg, None if seed is None else seed[rows] + 104729, grid_neg)[1]
                    v_neg = self._grounding(a_q, v_neg, F.normalize(grid_neg, dim=-1))
                    out["match_neg"] = self.match(torch.cat([a_q, v_neg], -1))
                out["match_pos"] = self.match(torch.cat([a, v_star], -1))[rows]  # [B, T, 2]
            a, v_star = a[rows], v_star[rows]
            h_a, w_a = self.temporal_a(q, a)
            h_v, w_v = self.temporal_v(q, v_star)
            out["temporal_a"], out["temporal_v"] = w_a, w_v
            f = self.fusion(torch.tanh(torch.cat([h_a + a.mean(1), h_v + v_star.mean(1)], -1)))
            z = torch.tanh(f * q)
        if self.cfg.multiple_choice:
            choices = batch["choices"]  # [B, 4, L]
            c = self.question(choices.flatten(0, 1)).view(*choices.shape[:2], -1)
            out["logits"] = (c @ self.choice_proj(z)[..., None]).squeeze(-1)
        else:
            out["logits"] = self.answer(z)
        return out


def match_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """2-way CE of the match head: positive frames → 1, another video's frames → 0."""
    pos, neg = out["match_pos"].flatten(0, 1), out["match_neg"]
    valid = batch["neg_valid"][:, None].expand(-1, neg.shape[1]).flatten().float()
    ce_pos = F.cross_entropy(pos, torch.ones(len(pos), dtype=torch.long, device=pos.device), reduction="none")
    ce_neg = F.cross_entropy(neg.flatten(0, 1), torch.zeros(len(pos), dtype=torch.long, device=pos.device),
                             reduction="none")
    # a same-video "negative" contributes 0; the fixed denominator keeps the per-process means of
    # equal shards averaging to the global mean (1- vs 2-process equality)
    return (ce_pos.sum() + (ce_neg * valid).sum()) / (2 * len(pos))


def compute_loss(cfg: ModelConfig, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """L = CE(answer) + w_match·L_match + w_source·(BCE(v_prob) + BCE(a_prob)) + w_cls·CE(cls(S), 0..K-1)."""
    terms = {"answer": F.cross_entropy(out["logits"], batch["answer"])}
    if "match_pos" in out:
        terms["match"] = match_loss(out, batch)
    if "v_prob" in out:
        y = batch["sources"].float()
        terms["source"] = F.binary_cross_entropy(out["v_prob"].clamp(1e-6, 1 - 1e-6), y) + F.binary_cross_entropy(
            out["a_prob"].clamp(1e-6, 1 - 1e-6), y)
        k = out["cls_logits"].shape[0]
        terms["cls"] = F.cross_entropy(out["cls_logits"], torch.arange(k, device=out["cls_logits"].device))
    weights = {"answer": 1.0, "match": cfg.w_match, "source": cfg.w_source, "cls": cfg.w_cls}
    terms["loss"] = sum(weights[k] * v for k, v in terms.items())
    return terms


def build_model(cfg: ModelConfig) -> AVQAModel:
    return AVQAModel(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
