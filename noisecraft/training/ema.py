"""Exponential moving average (EMA) of model weights.

The EMA copy is what diffusion models sample with (Song & Ermon 2020, "Improved Techniques for Training Score-Based
Generative Models", technique 5; Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Appendix B).
Each optimizer step t applies

    theta_ema <- decay_t * theta_ema + (1 - decay_t) * theta

with the warm-up of the TensorFlow ``ExponentialMovingAverage(num_updates=t)`` convention,

    decay_t = min(decay, (1 + t) / (10 + t)),

so the average is not dominated by the random initialisation during the first few hundred steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(step: int, *, decay: float, warmup: bool = True) -> float:
    """Decay used for the EMA update after ``step`` previous updates: ``min(decay, (1 + t) / (10 + t))``.

    Without warm-up the constant ``decay`` is returned.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not warmup:
        return decay
    return min(decay, (1 + step) / (10 + step))


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen float32 deep copy of ``model`` in eval mode, to be updated with :func:`update_ema`.

    Floating-point parameters and buffers are held in float32 even when the model trains in a lower precision, so
    the many tiny ``(1 - decay)`` increments are not rounded away.
    """
    ema = copy.deepcopy(model).float()
    ema.requires_grad_(False)
    return ema.eval()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, *, decay: float) -> None:
    """In place: ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` for every parameter.

    Buffers (e.g. normalisation statistics, step counters) are copied, not averaged: they are not optimised, so an
    average of them has no meaning.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
    ema_params = dict(ema.named_parameters())
    targets, sources = [], []
    for name, param in model.named_parameters():
        if name not in ema_params:
            raise ValueError(f"EMA model has no parameter {name!r}; build it with make_ema(model) from this model")
        targets.append(ema_params[name])
        sources.append(param.detach().to(ema_params[name].dtype))
    # lerp_(x, w) computes ema + w * (x - ema) = (1 - w) * ema + w * x, i.e. the update above with w = 1 - decay;
    # the foreach form updates all tensors in a few kernel launches instead of one per parameter.
    torch._foreach_lerp_(targets, sources, 1.0 - decay)
    ema_buffers = dict(ema.named_buffers())
    for name, buffer in model.named_buffers():
        ema_buffers[name].copy_(buffer)
