"""The Source-aware Semantic Representation (SaSR) module of SaSR-Net, as the authors' code computes it.

    A ─audio_in─► x_a ──blocks over [x_a ; S]──► x_a', S_a ─regroup(x_a', by x_v)─► x_a' ─group(S_a)─► G_a
    V ─visual_2d, visual_3d─► fuse ─► x_v ──blocks over [x_v ; S]──► x_v', S_v ─group(S_v)─► G_v
    x'' = back(x', G) + x'          (back: pre-norm cross-attention block, x' -> G, with its MLP)

S: K learnable source tokens shared by both modalities (zeros at init). ``group`` is a GroupViT /
MGN grouping block: a token-mixing MLP, a post-norm cross-attention block (tokens attend to the
segments), then each segment is assigned to one token (hard Gumbel-softmax in training, argmax at
eval, straight-through), and each group is its token plus the mean of its segments. The audio
branch is first regrouped softly with the T projected visual segments (before the visual blocks)
as its group tokens, so A'' depends on the frames. Presence heads read G_a and G_v; ``cls`` makes
token i predict source i. Shapes: B batch, T segments, K sources, D width.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample (scaled by 1/keep in training)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head scaled dot-product attention: one fused qkv projection for self-attention
    (``context=None``), separate q / k / v projections for cross-attention."""

    def __init__(self, dim: int, heads: int, cross: bool):
        super().__init__()
        self.heads = heads
        if cross:
            self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        if context is None:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = self.q(x), self.k(context), self.v(context)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SelfAttnBlock(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, cross=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossAttnBlock(nn.Module):
    """x attends to ``context``, then an MLP, both residual. Pre-norm (query and context normalised), or
    post-norm (nothing normalised before the attention, the result normalised at the end)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float, post_norm: bool):
        super().__init__()
        self.post_norm = post_norm
        if post_norm:
            self.norm_post = nn.LayerNorm(dim)
        else:
            self.norm_q, self.norm_k = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, cross=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            y = x + self.drop_path(self.attn(x, context))
        else:
            y = x + self.drop_path(self.attn(self.norm_q(x), self.norm_k(context)))
        y = y + self.drop_path(self.mlp(self.norm2(y)))
        return self.norm_post(y) if self.post_norm else y


_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply) of int64 values in [0, 2^32), kept there: the multiplier
    is under 2^27, so no product leaves the int64 range."""
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    return x ^ (x >> 16)


def gumbel_noise(shape: torch.Size, seeds: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise of ``shape`` = [B, ...]. ``seeds`` [B] (non-negative) gives each sample noise that
    is a function of its seed alone (a counter-based hash of (seed, element index), drawn for the whole
    batch at once, on the batch's device), so a sample's noise does not depend on how a batch is split over
    processes; the caller gives a new seed on every forward (the public code draws fresh noise each forward)."""
    if seeds is None:
        u = torch.rand(shape, dtype=like.dtype, device=like.device)
    else:
        s = seeds.to(device=like.device, dtype=torch.int64)[:, None]
        idx = torch.arange(shape[1:].numel(), device=like.device, dtype=torch.int64)[None]
        h = _mix32((idx + _mix32((s & _M32) ^ _mix32((s >> 32) & _M32))) & _M32)
        # in float32 at least, then cast: a bf16 u would round up to 1.0 near the top and give infinite noise
        u = ((h.double() + 0.5) / 2.0**32).to(torch.promote_types(like.dtype, torch.float32)).view(shape)
        return (-torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))).to(like.dtype)
    return -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))


def assign(logits: torch.Tensor, hard: bool, training: bool, tau: float = 1.0,
           seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Assignment of each segment to the groups, over the group axis (dim 1 of [B, G, L]).

    hard: one-hot with the softmax's gradient (straight-through); Gumbel noise in training, argmax at eval.
    soft: the softmax itself."""
    if not hard:
        return logits.softmax(1)
    if training:
        logits = (logits + gumbel_noise(logits.shape, seeds, logits)) / tau
    soft = logits.softmax(1)
    one_hot = F.one_hot(soft.argmax(1), logits.shape[1]).transpose(1, 2).to(soft.dtype)
    return one_hot - soft.detach() + soft


class GroupingBlock(nn.Module):
    """G groups gather the L segments assigned to them (GroupViT's grouping block as MGN / SaSR-Net use it).

    tokens: norm → token-mixing MLP over the token axis (n_in → hidden → G, no residual) → norm →
    post-norm cross-attention to the (normalised) segments; assignment of each segment over the G
    tokens (one head, scale D^-1/2); group = proj(sum of its segments' values / (count + 1)) + token;
    output = group + MLP(norm(group))."""

    def __init__(self, dim: int, n_in: int, n_groups: int, token_hidden: int, heads: int, hard: bool,
                 tau: float = 1.0, mlp_ratio: float = 4.0):
        super().__init__()
        self.hard, self.tau = hard, tau
        self.norm_tokens = nn.LayerNorm(dim)
        self.token_mlp = Mlp(n_in, token_hidden, n_groups)
        self.norm_post_tokens = nn.LayerNorm(dim)
        self.norm_x = nn.LayerNorm(dim)
        self.pre_assign = CrossAttnBlock(dim, heads, mlp_ratio, 0.0, post_norm=True)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_new = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, seeds: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # x [B, L, D], tokens [B, n_in, D] -> groups [B, G, D], assignment [B, G, L]
        x = self.norm_x(x)
        t = self.token_mlp(self.norm_tokens(tokens).transpose(1, 2)).transpose(1, 2)
        t = self.pre_assign(self.norm_post_tokens(t), x)
        logits = self.q(t) @ self.k(x).transpose(1, 2) * x.shape[-1] ** -0.5
        a = assign(logits, self.hard, self.training, self.tau, seeds)
        groups = self.proj((a / (a.sum(-1, keepdim=True) + 1.0)) @ self.v(x)) + t
        return groups + self.mlp(self.norm_new(groups)), a


class ModalityBranch(nn.Module):
    """One modality: blocks over [segments ; source tokens], optional soft regrouping of the segments by
    another modality's segments, hard grouping into the source tokens, back-projection onto the segments."""

    def __init__(self, dim: int, n_sources: int, n_segments: int, depth: int, heads: int, mlp_ratio: float,
                 drop_path: float, token_hidden: int, tau: float, regroup: bool):
        super().__init__()
        self.blocks = nn.ModuleList(SelfAttnBlock(dim, heads, mlp_ratio, drop_path) for _ in range(depth))
        self.regroup = GroupingBlock(dim, n_segments, n_segments, token_hidden, heads, hard=False) if regroup else None
        self.group = GroupingBlock(dim, n_sources, n_sources, token_hidden, heads, hard=True, tau=tau)
        self.back = CrossAttnBlock(dim, heads, mlp_ratio, drop_path, post_norm=False)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, other: torch.Tensor | None = None,
                seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = x.shape[1]
        h = torch.cat([x, tokens.expand(x.shape[0], -1, -1)], dim=1)
        for blk in self.blocks:
            h = blk(h)
        x1, s = h[:, :t], h[:, t:]
        if self.regroup is not None:
            if other is None:
                raise ValueError("this branch regroups its segments by another modality's: pass `other`")
            x1 = self.regroup(x1, other)[0]
        groups, assignment = self.group(x1, s, seeds)
        return self.back(x1, groups) + x1, groups, assignment  # x' enters twice, as published


class SaSRModule(nn.Module):
    """Audio [B,T,D] and pooled visual [B,T,D] segments -> A'', V'' [B,T,D], per-source presence
    probabilities a_prob, v_prob [B,K], the source-token classification logits [K,K], assignments."""

    def __init__(self, dim: int, n_sources: int, n_segments: int, depth: int, heads: int, mlp_ratio: float,
                 drop_path: float, token_hidden: int, tau: float, gate: bool = False):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(n_sources, dim))
        # not in the paper: zero-initialised scalar gates, A'' = A + g_a (A''_module - A) (likewise V'')
        self.gate_a = nn.Parameter(torch.zeros(())) if gate else None
        self.gate_v = nn.Parameter(torch.zeros(())) if gate else None
        self.audio_in = nn.Linear(dim, dim)
        # the public code fuses a "2D" and a "3D" projection of the visual feature, and passes the same
        # pooled frame feature as both
        self.visual_2d, self.visual_3d = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.visual_fuse = nn.Linear(2 * dim, dim)
        common = dict(dim=dim, n_sources=n_sources, n_segments=n_segments, depth=depth, heads=heads,
                      mlp_ratio=mlp_ratio, drop_path=drop_path, token_hidden=token_hidden, tau=tau)
        self.audio = ModalityBranch(**common, regroup=True)
        self.visual = ModalityBranch(**common, regroup=False)
        self.a_presence = nn.Linear(dim, 1)
        self.v_presence = nn.Linear(dim, 1)
        self.cls = nn.Linear(dim, n_sources)  # token i must predict source i
        self.apply(_init_weights)

    def _visual_in(self, v: torch.Tensor) -> torch.Tensor:
        return self.visual_fuse(torch.cat([self.visual_2d(v), self.visual_3d(v)], dim=-1))

    @staticmethod
    def _gated(x: torch.Tensor, out: torch.Tensor, gate: nn.Parameter | None) -> torch.Tensor:
        return out if gate is None else x + gate * (out - x)

    def visual_only(self, v: torch.Tensor, seeds: torch.Tensor | None = None) -> torch.Tensor:
        """V'' alone (the visual branch never sees the audio)."""
        v2 = self.visual(self._visual_in(v), self.tokens, seeds=None if seeds is None else seeds * 2)[0]
        return self._gated(v, v2, self.gate_v)

    def forward(self, a: torch.Tensor, v: torch.Tensor, seeds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x_v = self._visual_in(v)
        s_v = s_a = None
        if seeds is not None:  # the two groupings draw different noise
            s_v, s_a = seeds * 2, seeds * 2 + 1
        v2, g_v, assign_v = self.visual(x_v, self.tokens, seeds=s_v)
        a2, g_a, assign_a = self.audio(self.audio_in(a), self.tokens, other=x_v, seeds=s_a)
        return {
            "a": self._gated(a, a2, self.gate_a),
            "v": self._gated(v, v2, self.gate_v),
            "a_prob": torch.sigmoid(self.a_presence(g_a)).squeeze(-1),  # [B, K]
            "v_prob": torch.sigmoid(self.v_presence(g_v)).squeeze(-1),
            "cls_logits": self.cls(self.tokens),  # [K, K]
            "assign_a": assign_a,
            "assign_v": assign_v,
        }


def _init_weights(m: nn.Module) -> None:
    # the public module: every Linear truncated-normal (std 0.02, cut at +-2), biases 0; LayerNorm 1 / 0
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
        nn.init.zeros_(m.bias)
