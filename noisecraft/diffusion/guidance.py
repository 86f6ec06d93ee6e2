"""Classifier-free guidance (Ho & Salimans 2022) and composition of conditions (Liu et al. 2022) as denoisers.

Both are linear combinations of denoiser outputs, so they act on D(x, sigma) = E[x0 | x] exactly as on the score
(the score is (D - x) / sigma^2, affine in D). The wrapped callables follow the engine's `D(x, sigma)` contract and
plug into every sampler. Condition values are tensors with batch dim 0; a 0-d tensor or a batch of one is broadcast.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from noisecraft.diffusion.loss import draw
from noisecraft.diffusion.precond import append_dims, batch_sigma

Denoiser = Callable[..., Tensor]


def composed_denoiser(
    denoiser: Denoiser, conds: Sequence[dict[str, Tensor]], weights: Sequence[float], uncond: dict[str, Tensor]
) -> Callable[[Tensor, float | Tensor], Tensor]:
    """Conjunction of Composable Diffusion (Liu et al. 2022) on the denoiser: D = D_u + sum_i w_i (D_i - D_u).

    A negative weight steers away from a concept ("NOT"). All 1 + len(conds) evaluations run as one batched call:
    x and sigma are repeated and each condition key is concatenated along dim 0, so `uncond` and every entry of
    `conds` must have the same keys.
    """
    if len(conds) == 0 or len(conds) != len(weights):
        raise ValueError(f"need one weight per condition and at least one condition; got {len(conds)} conditions "
                         f"and {len(weights)} weights.")
    for i, cond in enumerate(conds):
        if set(cond) != set(uncond):
            raise ValueError(f"condition {i} has keys {sorted(cond)} but uncond has {sorted(uncond)}; give every "
                             "condition the same keys (the null value, e.g. the 'no label' class, for unused ones).")
    weights = [float(w) for w in weights]
    groups = [uncond, *conds]

    def guided(x: Tensor, sigma: float | Tensor) -> Tensor:
        batch_size = x.shape[0]
        x_all = torch.cat([x] * len(groups))
        sigma_all = batch_sigma(sigma, x).repeat(len(groups))
        cond_all = {key: torch.cat([_batched(g[key], batch_size, key) for g in groups]) for key in uncond}
        d_uncond, *d_conds = denoiser(x_all, sigma_all, **cond_all).chunk(len(groups))
        return d_uncond + sum(w * (d - d_uncond) for w, d in zip(weights, d_conds))

    return guided


def guided_denoiser(
    denoiser: Denoiser,
    cond: dict[str, Tensor],
    uncond: dict[str, Tensor],
    scale: float,
    *,
    sigma_interval: tuple[float, float] | None = None,
) -> Callable[[Tensor, float | Tensor], Tensor]:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 with scale = 1 + w) on the denoiser: D_u + scale (D_c - D_u).

    scale = 1 is the conditional denoiser, 0 the unconditional one. `sigma_interval = (lo, hi)` applies guidance
    only for lo < sigma <= hi and returns D_c elsewhere (Kynkaanniemi et al. 2024, "Applying guidance in a limited
    interval"), skipping the unconditional evaluation when no example of the batch is inside the interval.
    """
    guided = composed_denoiser(denoiser, [cond], [scale], uncond)
    if sigma_interval is None:
        return guided
    low, high = sigma_interval
    if not 0 <= low < high:
        raise ValueError(f"sigma_interval must be (low, high) with 0 <= low < high; got {sigma_interval!r}.")

    def interval_guided(x: Tensor, sigma: float | Tensor) -> Tensor:
        sigma = batch_sigma(sigma, x)
        inside = (sigma > low) & (sigma <= high)
        conditional = {key: _batched(value, x.shape[0], key) for key, value in cond.items()}
        if not inside.any():
            return denoiser(x, sigma, **conditional)
        if inside.all():
            return guided(x, sigma)
        return torch.where(append_dims(inside, x.ndim), guided(x, sigma), denoiser(x, sigma, **conditional))

    return interval_guided


def drop_condition(
    cond: dict[str, Tensor], null_cond: dict[str, Tensor], prob: float, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Condition dropout for classifier-free guidance training (Ho & Salimans 2022, Algorithm 1).

    Each example's condition is replaced by the null one with probability `prob`, the same draw for every key (so a
    cross-attention context and its mask are dropped together). A null value has the shape of one example's
    condition (or a leading 1) and is broadcast over the batch.
    """
    if not 0 <= prob <= 1:
        raise ValueError(f"prob must be in [0, 1]; got {prob!r}.")
    if set(cond) != set(null_cond):
        raise ValueError(f"cond has keys {sorted(cond)} but null_cond has {sorted(null_cond)}; give a null value "
                         "for every condition key.")
    if not cond:
        return {}
    batch_size = _batch_size(cond)
    device = next(iter(cond.values())).device
    drop = draw(torch.rand, batch_size, generator=generator, device=device) < prob
    return {key: torch.where(append_dims(drop, value.ndim), _null_like(null_cond[key], value, key), value)
            for key, value in cond.items()}


def _batched(value: Tensor, batch_size: int, key: str) -> Tensor:
    """A condition tensor with batch dim `batch_size`: 0-d tensors and batches of one are expanded."""
    if not isinstance(value, Tensor):
        raise TypeError(f"condition {key!r} must be a tensor with batch dim 0; got {type(value).__name__}.")
    if value.ndim == 0:
        return value.expand(batch_size)
    if value.shape[0] == batch_size:
        return value
    if value.shape[0] == 1:
        return value.expand(batch_size, *value.shape[1:])
    raise ValueError(f"condition {key!r} has batch size {value.shape[0]} but x has {batch_size}; give one value "
                     "per example or a single value to broadcast.")


def _null_like(null: Tensor, value: Tensor, key: str) -> Tensor:
    """The null condition broadcast to `value`'s shape: it has one example's shape, with or without a leading 1."""
    null = torch.as_tensor(null, device=value.device).to(value.dtype)
    if null.shape == value.shape[1:]:
        null = null.unsqueeze(0)
    if null.shape != (1, *value.shape[1:]):
        raise ValueError(f"null value for {key!r} has shape {tuple(null.shape)}; expected one example's shape "
                         f"{tuple(value.shape[1:])} (optionally with a leading 1).")
    return null.expand_as(value)


def _batch_size(cond: dict[str, Tensor]) -> int:
    sizes = {key: value.shape[0] if isinstance(value, Tensor) and value.ndim else None for key, value in cond.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"every condition must be a tensor with the same batch dim 0; got sizes {sizes}.")
    return next(iter(sizes.values()))
