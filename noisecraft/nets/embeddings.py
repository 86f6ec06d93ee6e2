"""Noise-level embeddings: map the scalar conditioning input ``c_noise`` to a feature vector.

Two choices, as in Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models",
EDM, Table 7 / Appendix F.2):

* positional (Vaswani et al. 2017, Sec. 3.5; used by DDPM/DDPM++): deterministic sinusoids whose
  frequencies are geometrically spaced between 1 and ``1 / max_positions``.
* Fourier (Tancik et al. 2020; used by NCSN++): sinusoids at fixed random frequencies drawn once
  from N(0, scale^2).

Both return ``[B, num_channels]`` features ``[cos(w * c_noise), sin(w * c_noise)]`` in float32, whatever
autocast is active, because low-precision sines of large arguments are inaccurate.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _sinusoids(c_noise: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """``[cos(c_noise * w), sin(c_noise * w)]`` for every frequency ``w``; ``c_noise`` is ``[B]``."""
    angles = c_noise.to(torch.float32)[:, None] * frequencies.to(torch.float32)[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def _check_even(num_channels: int) -> None:
    if num_channels <= 0 or num_channels % 2 != 0:
        raise ValueError(
            f"noise embedding needs a positive even number of channels (a cos and a sin per frequency), "
            f"got {num_channels}; use an even base_channels"
        )


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding (Vaswani et al. 2017, Sec. 3.5) of a continuous ``c_noise``.

    Frequency ``i`` is ``w_i = (1 / max_positions) ** (i / (num_channels / 2))``, i = 0 .. num_channels/2 - 1,
    so a DDPM timestep in 0..999 or EDM's ``ln(sigma) / 4`` are both resolved.
    """

    def __init__(self, num_channels: int, *, max_positions: int = 10_000):
        super().__init__()
        _check_even(num_channels)
        half = num_channels // 2
        frequencies = torch.exp(-math.log(max_positions) * torch.arange(half, dtype=torch.float64) / half)
        # Deterministic, so not saved in checkpoints.
        self.register_buffer("frequencies", frequencies.to(torch.float32), persistent=False)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return _sinusoids(c_noise, self.frequencies)


class FourierEmbedding(nn.Module):
    """Random Fourier features (Tancik et al. 2020) with frequencies ``2*pi*w``, ``w ~ N(0, scale^2)``, fixed.

    The frequencies are random, so they are a persistent buffer: a checkpoint restores exactly the same embedding.
    """

    def __init__(self, num_channels: int, *, scale: float = 16.0):
        super().__init__()
        _check_even(num_channels)
        if scale <= 0:
            raise ValueError(f"fourier_scale must be positive, got {scale}")
        self.register_buffer("frequencies", 2 * math.pi * scale * torch.randn(num_channels // 2))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return _sinusoids(c_noise, self.frequencies)
