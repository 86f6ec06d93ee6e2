"""A permutation-equivariant point-cloud transformer: the raw network ``F(x, c_noise, **cond)`` of the points modality.

``x`` is a cloud ``[B, N, C]`` (C = 3 coordinates, or 6 with normals). Every point is embedded by the same MLP, then
``depth`` pre-norm blocks of

    self-attention over the points (``F.scaled_dot_product_attention``; no positional encoding, so permuting the
    input points permutes the output the same way: F(P x) = P F(x) for every permutation P) -- or, with
    ``mixer="pool"``, the PointNet / DeepSets-style ablation: every point gets ``W_o GELU(W_l h_i + max_j W_g h_j)``
    (a global max-pooled feature, O(N) instead of O(N^2); benchmarks/points/compare.py measures the two at equal
    steps),
    cross-attention to condition tokens ``context [B, T, context_dim]`` (``context_mask [B, T]``, True = real token;
    a learned null token is always present, so a fully masked context, the "no text" condition of classifier-free
    guidance, is well defined),
    an MLP,

each modulated by adaLN-zero (DiT, Peebles & Xie 2023) from
``c = MLP(sinusoids(c_noise)) + E[class] + W pool(context)``.
The class table has a null row (index ``num_classes``: "no label"), the null condition of classifier-free guidance.
The output layer is zero-initialised, so a new network predicts F = 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from noisecraft.nets.embeddings import PositionalEmbedding
from noisecraft.nets.layers import zero_init

__all__ = ["PointTransformer", "PointTransformerConfig", "PRESETS", "point_transformer_config"]


@dataclass
class PointTransformerConfig:
    """``in_channels``: 3 (xyz) or 6 (xyz + normal); ``dim`` width, ``depth`` blocks, ``heads`` attention heads;
    ``num_classes`` > 0 adds a class table (+ a null row); ``context_dim`` adds cross-attention to text tokens."""

    in_channels: int = 3
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 0
    context_dim: int | None = None
    max_points: int = 4096  # the largest cloud a model is asked to make (the pipeline's limit for --points)
    mixer: str = "attention"  # how points see each other: "attention" or "pool" (global max-pool, PointNet-style)

    def __post_init__(self) -> None:
        for name in ("in_channels", "dim", "depth", "heads", "max_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"point_transformer {name} must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(f"point_transformer dim ({self.dim}) must be divisible by heads ({self.heads})")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"point_transformer num_classes must be an integer >= 0, got {self.num_classes!r}")
        if self.context_dim is not None and (not isinstance(self.context_dim, int) or self.context_dim < 1):
            raise ValueError(f"point_transformer context_dim must be a positive integer or None, "
                             f"got {self.context_dim!r}")
        if self.mixer not in ("attention", "pool"):
            raise ValueError(f"point_transformer mixer must be attention or pool, got {self.mixer!r}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"point_transformer mlp_ratio must be positive, got {self.mlp_ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 32, "depth": 1, "heads": 2},
    "small": {"dim": 96, "depth": 4, "heads": 4},
    "base": {"dim": 256, "depth": 8, "heads": 8},
}


def point_transformer_config(preset: str, **overrides: Any) -> PointTransformerConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown point_transformer preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PointTransformerConfig(**{**PRESETS[preset], **overrides})


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class PointBlock(nn.Module):
    """x + g1 SelfAttn(mod(LN x)); x + CrossAttn(LN x, context) (when the net has a context); x + g2 MLP(mod(LN x))."""

    def __init__(self, config: PointTransformerConfig):
        super().__init__()
        dim, self.heads = config.dim, config.heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.pool = config.mixer == "pool"
        self.qkv = nn.Linear(dim, 2 * dim) if self.pool else nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cross = config.context_dim is not None
        if self.cross:
            self.norm_cross = nn.LayerNorm(dim)
            self.to_q = nn.Linear(dim, dim)
            self.to_kv = nn.Linear(dim, 2 * dim)
            self.cross_proj = zero_init(nn.Linear(dim, dim))
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        hidden = int(round(dim * config.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.modulation = zero_init(nn.Linear(dim, 6 * dim))

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        batch, length, dim = t.shape
        return t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None,
                context_mask: torch.Tensor | None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=-1)
        batch, length, dim = x.shape
        h = _modulate(self.norm1(x), shift1, scale1)
        if self.pool:  # W_l h_i + max_j W_g h_j: the max is the same for any order of the points
            local, pooled = self.qkv(h).chunk(2, dim=-1)
            x = x + gate1[:, None] * self.proj(F.gelu(local + pooled.max(dim=1, keepdim=True).values))
        else:
            q, k, v = self.qkv(h).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
            h = F.scaled_dot_product_attention(q, k, v)
            x = x + gate1[:, None] * self.proj(h.transpose(1, 2).reshape(batch, length, dim))
        if self.cross:
            q = self._split(self.to_q(self.norm_cross(x)))
            k, v = self.to_kv(context).chunk(2, dim=-1)
            mask = context_mask[:, None, None, :]
            h = F.scaled_dot_product_attention(q, self._split(k).to(q.dtype), self._split(v).to(q.dtype),
                                               attn_mask=mask)
            x = x + self.cross_proj(h.transpose(1, 2).reshape(batch, length, dim))
        h = self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return x + gate2[:, None] * h


class PointTransformer(nn.Module):
    """``F(x [B, N, C], c_noise [B], *, class_labels=None, context=None, context_mask=None) -> [B, N, C]``."""

    def __init__(self, config: PointTransformerConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.embed = nn.Sequential(nn.Linear(config.in_channels, dim), nn.GELU(approximate="tanh"),
                                   nn.Linear(dim, dim))
        self.noise_embed = PositionalEmbedding(dim)
        self.noise_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_embed = nn.Embedding(config.num_classes + 1, dim) if config.num_classes else None
        if config.context_dim is not None:
            self.context_in = nn.Sequential(nn.LayerNorm(config.context_dim), nn.Linear(config.context_dim, dim))
            self.null_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pool = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(PointBlock(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation_out = zero_init(nn.Linear(dim, 2 * dim))
        self.out = zero_init(nn.Linear(dim, config.in_channels))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.config.in_channels:
            raise ValueError(f"point_transformer takes clouds [B, N, {self.config.in_channels}], got {tuple(x.shape)}")
        batch = x.shape[0]
        c = self.noise_mlp(self.noise_embed(c_noise.reshape(-1).expand(batch)).to(x.dtype))
        if self.class_embed is not None:
            labels = (torch.full((batch,), self.config.num_classes, dtype=torch.long, device=x.device)
                      if class_labels is None else class_labels.reshape(-1).expand(batch).long())
            c = c + self.class_embed(labels)
        tokens = mask = None
        if self.config.context_dim is not None:
            if context is None:  # no text: only the null token
                tokens = self.null_token.expand(batch, 1, -1).to(x.dtype)
                mask = torch.ones(batch, 1, dtype=torch.bool, device=x.device)
            else:
                if context_mask is None:
                    context_mask = torch.ones(context.shape[:2], dtype=torch.bool, device=x.device)
                text = self.context_in(context.to(x.dtype))
                weights = context_mask.unsqueeze(-1).to(text.dtype)
                pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1)
                c = c + self.pool(pooled)
                tokens = torch.cat([self.null_token.expand(batch, 1, -1).to(text.dtype), text], dim=1)
                mask = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=x.device), context_mask.bool()], 1)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, c, tokens, mask)
        shift, scale = self.modulation_out(F.silu(c)).chunk(2, dim=-1)
        return self.out(_modulate(self.norm_out(h), shift, scale))
