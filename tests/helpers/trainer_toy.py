"""A tiny 2-D denoising problem for the trainer tests (imported by the tests and by the subprocess scripts)."""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn


class ToyDenoiser(nn.Module):
    """A denoiser of 2-D points with EDM preconditioning (sigma_data = 1):
    D(x, sigma) = x / (1 + sigma^2) + sigma / sqrt(1 + sigma^2) * MLP([x / sqrt(1 + sigma^2), log sigma])."""

    def __init__(self, hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        # Dropout draws from the global torch RNG, so exact-resume tests also cover saving and restoring that RNG.
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.reshape(-1, 1)
        scale = (1 + sigma**2).rsqrt()
        return x * scale**2 + sigma * scale * self.net(torch.cat([x * scale, sigma.log()], dim=-1))


class RingDataset(torch.utils.data.Dataset):
    """``size`` points spread evenly on the unit circle."""

    def __init__(self, size: int = 40):
        angles = torch.arange(size, dtype=torch.float32) * (2 * math.pi / size)
        self.points = torch.stack([angles.cos(), angles.sin()], dim=-1)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.points[index]


def denoising_loss(model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-example ||D(x0 + sigma n, sigma) - x0||^2 with log-normal sigma; all randomness from ``generator``."""
    sigma = (torch.randn(x0.shape[0], generator=generator) * 1.2 - 1.2).exp()
    noise = torch.randn(x0.shape, generator=generator)
    return (model(x0 + sigma[:, None] * noise, sigma) - x0).square().sum(-1)


def fixed_sigma_loss(model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A loss without randomness, for comparisons where the noise draws would differ."""
    sigma = torch.full((x0.shape[0],), 0.5)
    return (model(x0 + 0.1, sigma) - x0).square().sum(-1)


MODEL_CONFIG = {"kind": "toy", "hidden": 32}


@torch.no_grad()
def evaluation_loss(model: nn.Module, *, draws: int = 16) -> float:
    """Mean denoising loss over the whole ring with a fixed generator: a noise-free measure of progress."""
    data = RingDataset().points.repeat(draws, 1)
    was_training = model.training
    model.eval()  # no dropout: the measure must not draw from (and so disturb) the global RNG
    loss = denoising_loss(model, data, torch.Generator().manual_seed(1234)).mean().item()
    model.train(was_training)
    return loss


def state_hash(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
