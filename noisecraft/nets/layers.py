"""Building blocks of the diffusion U-Net: residual blocks with adaptive GroupNorm, and attention.

The design follows the ADM U-Net (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis",
Sec. 3 and Appendix A: BigGAN-style resampling residual blocks, adaptive GroupNorm, multi-head attention)
and its re-implementation in EDM (Karras et al. 2022, Appendix F, ``UNetBlock``). Cross-attention to condition
tokens is the latent-diffusion conditioning of Rombach et al. 2022 (Eq. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESAMPLE_MODES = ("none", "down", "up")


def num_groups_for(channels: int, max_groups: int) -> int:
    """Largest group count ``<= max_groups`` that divides ``channels`` (GroupNorm needs an exact split)."""
    groups = min(max_groups, channels)
    while channels % groups != 0:
        groups -= 1
    return groups


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups_for(channels, max_groups), channels, eps=1e-6)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias, so the residual branch it ends starts as the zero function."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def resample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """2x average-pool ("down"), 2x nearest-neighbour ("up") or identity ("none")."""
    if mode == "down":
        return F.avg_pool2d(x, kernel_size=2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return x


class ResBlock(nn.Module):
    """Residual block with adaptive GroupNorm (Dhariwal & Nichol 2021, Sec. 3, "AdaGN"):

        h   = Conv3x3(resample(SiLU(GroupNorm(x))))
        s,b = Linear(emb)
        h   = Conv3x3(Dropout(SiLU(GroupNorm(h) * (1 + s) + b)))       (last conv zero-initialised)
        out = skip(resample(x)) + h

    ``emb`` is the (already SiLU-activated) noise/class embedding. ``skip`` is a 1x1 conv when the channel count
    changes, else the identity; with a zero last conv the block starts as ``skip(resample(x))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        embedding_channels: int,
        resample_mode: str = "none",
        dropout: float = 0.0,
        max_groups: int = 32,
    ):
        super().__init__()
        if resample_mode not in RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {RESAMPLE_MODES}, got {resample_mode!r}")
        self.resample_mode = resample_mode
        self.norm_in = group_norm(in_channels, max_groups)
        self.conv_in = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.to_scale_shift = nn.Linear(embedding_channels, 2 * out_channels)
        self.norm_out = group_norm(out_channels, max_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv_out = zero_init(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
        self.skip = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(resample(F.silu(self.norm_in(x)), self.resample_mode))
        scale, shift = self.to_scale_shift(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm_out(h) * (1 + scale) + shift)
        h = self.conv_out(self.dropout(h))
        return self.skip(resample(x, self.resample_mode)) + h


class AttentionBlock(nn.Module):
    """Residual multi-head attention from pixels to keys/values (Vaswani et al. 2017, Eq. 1;
    Rombach et al. 2022, Eq. 3):

        out = x + Proj(softmax(Q K^T / sqrt(d)) V),   Q = W_q GroupNorm(x)

    Self-attention (``context_dim=None``): K, V come from the same normalised pixels.
    Cross-attention: K, V come from ``LayerNorm(context)`` tokens ``[B, T, context_dim]``; ``context_mask``
    ``[B, T]`` (True = real token) removes padding tokens from the softmax. The caller must leave at least one
    real token per row (UNet2D prepends a learned null token) so that the softmax is never over an empty set.
    ``Proj`` is zero-initialised so the block starts as the identity.
    """

    def __init__(self, channels: int, *, num_heads: int, max_groups: int = 32, context_dim: int | None = None):
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"attention channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.is_cross_attention = context_dim is not None
        self.norm = group_norm(channels, max_groups)
        self.to_q = nn.Conv2d(channels, channels, kernel_size=1)
        if context_dim is None:
            self.context_norm = None
            self.to_kv = nn.Conv2d(channels, 2 * channels, kernel_size=1)
        else:
            self.context_norm = nn.LayerNorm(context_dim)
            self.to_kv = nn.Linear(context_dim, 2 * channels)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, kernel_size=1))

    def _heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` -> ``[B, heads, N, C / heads]``."""
        batch, length, channels = tokens.shape
        return tokens.reshape(batch, length, self.num_heads, channels // self.num_heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        q = self.to_q(h).flatten(2).transpose(1, 2)  # [B, HW, C]
        if self.context_norm is None:
            kv = self.to_kv(h).flatten(2).transpose(1, 2)  # [B, HW, 2C]
            mask = None
        else:
            kv = self.to_kv(self.context_norm(context))  # [B, T, 2C]
            # Broadcast over heads and queries; True = the key takes part in the softmax.
            mask = None if context_mask is None else context_mask[:, None, None, :]
        k, v = kv.chunk(2, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        # SDPA needs one dtype; under autocast K/V can differ from Q (e.g. LayerNorm output stays float32).
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, height * width, channels).transpose(1, 2)
        return x + self.proj_out(out.reshape(batch, channels, height, width))


class UNetBlock(nn.Module):
    """One U-Net stage element: a ResBlock, then optional self-attention, then optional cross-attention.

    Cross-attention is only built where self-attention is (``attention=True``) and ``context_dim`` is set,
    i.e. at the configured attention resolutions and in the middle of the network.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        embedding_channels: int,
        resample_mode: str = "none",
        attention: bool = False,
        num_heads: int = 4,
        context_dim: int | None = None,
        dropout: float = 0.0,
        max_groups: int = 32,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.res = ResBlock(
            in_channels,
            out_channels,
            embedding_channels=embedding_channels,
            resample_mode=resample_mode,
            dropout=dropout,
            max_groups=max_groups,
        )
        self.self_attention = (
            AttentionBlock(out_channels, num_heads=num_heads, max_groups=max_groups) if attention else None
        )
        self.cross_attention = (
            AttentionBlock(out_channels, num_heads=num_heads, max_groups=max_groups, context_dim=context_dim)
            if attention and context_dim is not None
            else None
        )

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.res(x, emb)
        if self.self_attention is not None:
            x = self.self_attention(x)
        if self.cross_attention is not None:
            x = self.cross_attention(x, context, context_mask)
        return x
