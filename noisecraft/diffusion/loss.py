"""Training objective: a noise-level distribution p(sigma), a weighting lambda(sigma) and the denoising loss.

EDM (Karras et al. 2022) eq. 2 and section 5 write every diffusion objective in one space:

    L = E_{sigma ~ p(sigma), x0, n ~ N(0, I)} [ lambda(sigma) * || D(x0 + sigma * n; sigma) - x0 ||^2 ]

Epsilon-, v- and F-prediction losses are this x0-space MSE with a particular lambda(sigma); the weightings below
are those lambdas, derived in their docstrings from x = x0 + sigma * eps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from noisecraft.diffusion.precond import append_dims, batch_sigma, check_number
from noisecraft.diffusion.vp import VPSchedule


def draw(sampler: Callable[..., Tensor], shape, *, generator: torch.Generator | None, device=None, **kwargs) -> Tensor:
    """Call `torch.randn` or `torch.rand` for `shape` on the generator's device, then move to `device`.

    A CPU generator cannot fill a CUDA tensor, and drawing on the generator's device keeps results reproducible
    across devices.
    """
    source = generator.device if generator is not None else device
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return sampler(shape, generator=generator, device=source, **kwargs).to(device)


# --- noise-level distributions p(sigma): __call__(batch_size, generator, device) -> [B] sigmas ---


@dataclass(frozen=True)
class LogNormalSigma:
    """EDM training distribution (Table 1): ln(sigma) ~ N(p_mean, p_std^2)."""

    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        check_number(self.p_mean, "p_mean")
        check_number(self.p_std, "p_std", positive=True)

    def __call__(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        return (self.p_mean + self.p_std * draw(torch.randn, batch_size, generator=generator, device=device)).exp()


@dataclass(frozen=True)
class LogUniformSigma:
    """ln(sigma) ~ U[ln sigma_min, ln sigma_max]: every octave of noise equally often."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        if not check_number(self.sigma_min, "sigma_min", positive=True) < check_number(self.sigma_max, "sigma_max"):
            raise ValueError(f"need sigma_min < sigma_max; got {self.sigma_min} and {self.sigma_max}.")

    def __call__(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        u = draw(torch.rand, batch_size, generator=generator, device=device)
        return (math.log(self.sigma_min) + u * math.log(self.sigma_max / self.sigma_min)).exp()


@dataclass(frozen=True)
class VPTimestepSigma:
    """DDPM training (Ho et al. 2020, Algorithm 1): t ~ U{0, ..., T-1}, sigma = sigma(t) of the VP schedule."""

    vp_schedule: VPSchedule

    def __post_init__(self):
        if not isinstance(self.vp_schedule, VPSchedule):
            raise TypeError(f"vp_schedule must be a VPSchedule; got {type(self.vp_schedule).__name__}.")

    def __call__(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        num_steps = self.vp_schedule.num_steps
        u = draw(torch.rand, batch_size, generator=generator, device=device)
        t = (u * num_steps).floor().clamp(max=num_steps - 1)  # uniform over the integer timesteps
        return self.vp_schedule.t_to_sigma(t)


# --- weightings lambda(sigma) on the x0-space MSE; each returns a [B] tensor ---


def edm_weight(sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """EDM eq. 8: lambda = 1 / c_out^2 = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2.

    It makes the loss the plain MSE of the network output F against its target, with unit weight at every sigma.
    """
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def eps_weight(sigma: Tensor) -> Tensor:
    """lambda = 1 / sigma^2: the epsilon-MSE of DDPM (Ho et al. 2020, eq. 14, "L_simple").

    eps_hat = (x - D) / sigma and eps = (x - x0) / sigma, so ||eps_hat - eps||^2 = ||D - x0||^2 / sigma^2.
    """
    return sigma.pow(-2)


def v_weight(sigma: Tensor) -> Tensor:
    """lambda = (1 + sigma^2) / sigma^2 = SNR + 1: the v-MSE (Salimans & Ho 2022, "SNR+1" weighting, sigma_data = 1).

    v_hat - v = (D - x0) / c_out with c_out = -sigma / sqrt(1 + sigma^2) (see VPredPrecond).
    """
    return (1 + sigma**2) / sigma**2


def min_snr_weight(sigma: Tensor, gamma: float = 5.0) -> Tensor:
    """Min-SNR-gamma (Hang et al. 2023, "Efficient diffusion training via Min-SNR weighting strategy").

    lambda = min(SNR, gamma) on the x0-MSE, where SNR = alpha_t^2 / sigma_t^2 = 1 / sigma^2 for x = x0 + sigma * eps.
    Written in x0 terms it does not depend on what the network predicts: the epsilon-MSE is SNR times the x0-MSE,
    so the paper's epsilon-loss weight min(SNR, gamma) / SNR is this same lambda.
    """
    return sigma.pow(-2).clamp(max=gamma)


def uniform_weight(sigma: Tensor) -> Tensor:
    """lambda = 1: the unweighted x0-MSE."""
    return torch.ones_like(sigma)


WEIGHTINGS: dict[str, Callable[..., Tensor]] = {
    "edm": edm_weight,
    "eps": eps_weight,
    "v": v_weight,
    "min_snr": min_snr_weight,
    "uniform": uniform_weight,
}


def get_weighting(name: str, *, sigma_data: float = 0.5, min_snr_gamma: float = 5.0) -> Callable[[Tensor], Tensor]:
    """The weighting `name` as a function of sigma alone, its options (sigma_data, gamma) bound."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}.")
    options = {"edm": {"sigma_data": sigma_data}, "min_snr": {"gamma": min_snr_gamma}}.get(name, {})
    return functools.partial(WEIGHTINGS[name], **options)


def denoising_loss(
    denoiser: Callable[..., Tensor],
    x0: Tensor,
    sigma: float | Tensor,
    weighting: str | Callable[[Tensor], Tensor],
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    weight_mask: Tensor | None = None,
    **cond,
) -> Tensor:
    """Per-example loss `[B]` of EDM eq. 2: lambda(sigma) * mean over non-batch dims of (D(x0 + sigma n; sigma) - x0)^2.

    `weighting` is a name from WEIGHTINGS (default options) or a function sigma `[B]` -> weights `[B]`.
    `noise` fixes n (shape of x0); otherwise n ~ N(0, I) is drawn with `generator`.
    `weight_mask` (bool or float, broadcastable to x0: `[B, N, 1]` for padded points, `[B, D]` for missing values)
    turns the mean into the weighted mean sum(w * err^2) / sum(w) over the non-batch elements of x0; elements with
    w = 0 cannot change the loss (even if x0 or D are NaN there), and an example with no weight at all costs 0.
    """
    weight = get_weighting(weighting) if isinstance(weighting, str) else weighting
    sigma = batch_sigma(sigma, x0)
    if noise is None:
        noise = draw(torch.randn, x0.shape, generator=generator, device=x0.device, dtype=sigma.dtype)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has {tuple(x0.shape)}; they must match.")
    x = x0 + append_dims(sigma, x0.ndim) * noise
    error = denoiser(x, sigma, **cond) - x0
    if weight_mask is None:
        squared_error = error.square().flatten(1).mean(1)
    else:
        w = _broadcast_weight_mask(weight_mask, x0).to(error.dtype)
        error = torch.where(w != 0, error, 0.0)  # a where, not a product: 0 * NaN garbage would still be NaN
        total = w.flatten(1).sum(1)
        squared_error = (w * error.square()).flatten(1).sum(1) / total.clamp(min=torch.finfo(total.dtype).tiny)
    return weight(sigma) * squared_error


def _broadcast_weight_mask(weight_mask: Tensor, x0: Tensor) -> Tensor:
    """`weight_mask` expanded to x0's shape (a view), or a ValueError if it does not broadcast to it."""
    if not isinstance(weight_mask, Tensor):
        raise TypeError(f"weight_mask must be a tensor; got {type(weight_mask).__name__}.")
    try:
        if torch.broadcast_shapes(weight_mask.shape, x0.shape) != x0.shape:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(f"weight_mask has shape {tuple(weight_mask.shape)}, which does not broadcast to x0's "
                         f"{tuple(x0.shape)} (e.g. use [B, N, 1] for per-point masks).") from None
    return weight_mask.to(x0.device).expand(x0.shape)
