"""Learning-rate multipliers for ``torch.optim.lr_scheduler.LambdaLR``: linear warm-up, then constant or a linear /
cosine decay over the last steps (warmup-stable-decay, Hägele et al. 2024, arXiv:2405.18392)."""

from __future__ import annotations

import math

LR_DECAYS = ("none", "linear", "cosine")


def warmup_factor(step: int, *, warmup_steps: int) -> float:
    """Learning-rate multiplier of linear warm-up: ``min(1, (step + 1) / warmup_steps)`` for 0-based ``step``."""
    return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)


def lr_factor(step: int, *, steps: int, warmup_steps: int, decay: str = "none", decay_steps: int = 0,
              min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier of 0-based ``step``: linear warm-up, then constant, then a ``decay`` ("linear" or
    "cosine") over the last ``decay_steps`` of ``steps`` (0: everything after warm-up) that reaches ``min_ratio``
    at the last step, ``steps - 1``."""
    factor = warmup_factor(step, warmup_steps=warmup_steps)
    if decay == "none":
        return factor
    start = steps - decay_steps if decay_steps else max(warmup_steps - 1, 0)  # the warm-up peak
    span = max(steps - 1 - start, 1)
    progress = min(max((step - start) / span, 0.0), 1.0)
    shape = 1.0 - progress if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor * (min_ratio + (1.0 - min_ratio) * shape)
