"""Samplers: solve the probability-flow ODE (or its SDE) from sigmas[0] down to sigmas[-1].

With x_sigma = x0 + sigma * eps and a denoiser D(x, sigma) ~ E[x0 | x_sigma], the probability-flow ODE is
(Karras et al. 2022, "EDM", eq. 1 with s(t) = 1, sigma(t) = t)

    dx / dsigma = (x - D(x, sigma)) / sigma.

Every sampler is a flat function `sample_<name>(denoiser, x, sigmas, *, callback=None, generator=None, **options)`
(k-diffusion names and meaning). `x` is the starting noise already multiplied by sigmas[0]; `sigmas` is a strictly
descending schedule (see `schedules.py`) whose last entry may be 0. The denoiser is called as
`denoiser(x, sigma)` with sigma a `[B]` tensor (float32 or wider); bind conditioning with `functools.partial`.
`generator` drives all fresh noise, `callback(info)` is called after every step with
info = {"i", "x", "sigma", "sigma_next", "denoised"}. Coefficients are computed as Python floats (double precision,
for free) and tensors stay in x's dtype. The step to sigma = 0 returns the denoised estimate D(x, sigma) (the Euler
step there), so no method divides by zero. Samplers run under `torch.no_grad()`.

Noise hook (k-diffusion's `noise_sampler`): every sampler that draws fresh noise (`euler` / `heun` with churn,
`euler_ancestral`, `ddpm`, `ddim` with eta > 0, `dpmpp_2m_sde`, `dpmpp_3m_sde`, `consistency`) takes
`noise_sampler: Callable[[float, float], Tensor] | None = None`. It is called once per noise draw as
`noise_sampler(sigma, sigma_next)` with the two noise levels the noise moves between as Python floats ((sigma,
sigma_next) of an ancestral / SDE step; (sigma, sigma_hat) of a churn step, sigma_hat > sigma) and must return
standard-normal-like noise shaped like x; the sampler scales it. Use it to keep the noise on a subspace the data
live on (e.g. zero centre of mass for point clouds: `lambda s, s_next: (z := randn) - z.mean(1, keepdim=True)`),
or for Brownian-tree noise. None draws `torch.randn` from `generator` (`sampling_core.default_noise_sampler`),
exactly as without the hook. Deterministic samplers take no noise_sampler.

Number of denoiser calls for n steps ending at sigma = 0 (`nfe`): 2n - 1 for `heun` and `dpm_2`, n for the rest.

This module holds the single-step samplers and the registry `SAMPLERS`; the multistep ones live in `multistep.py`
and the shared checks in `sampling_core.py`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from noisecraft.diffusion.multistep import (
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m_sde,
    sample_lms,
    sample_unipc,
)
from noisecraft.diffusion.sampling_core import (
    Callback,
    Denoiser,
    NoiseSampler,
    _check_eta,
    _check_inputs,
    _denoise,
    _noise_sampler,
    _report,
    to_d,
)


def _ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step sigma -> sigma_next into a deterministic part to sigma_down and fresh noise of std sigma_up.

    sigma_up = eta * sigma_next * sqrt(sigma^2 - sigma_next^2) / sigma is DDIM's sigma_t (Song et al. 2021, eq. 16)
    in sigma form; eta = 1 is the DDPM posterior std. sigma_down = sqrt(sigma_next^2 - sigma_up^2) keeps the
    marginal std at sigma_next. sigma_up is capped at sigma_next so that eta > 1 stays valid.
    """
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * sigma_next * math.sqrt(sigma**2 - sigma_next**2) / sigma)
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Euler's method on the probability-flow ODE (EDM Algorithm 2 without the 2nd-order correction). NFE: n.

    `s_churn`, `s_tmin`, `s_tmax`, `s_noise` add EDM's stochastic churn (Algorithm 2, lines 4-6); 0 churn is the ODE.
    """
    sigmas = _check_inputs(x, sigmas, generator)
    noise_sampler = _noise_sampler(x, generator, noise_sampler)
    n = len(sigmas) - 1
    for i in range(n):
        sigma_next = sigmas[i + 1]
        x, sigma_hat = _churn(x, sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = _denoise(denoiser, x, sigma_hat)
        x = x + to_d(x, sigma_hat, denoised) * (sigma_next - sigma_hat)
        _report(callback, i, x, sigmas[i], sigma_next, denoised)
    return x


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Heun's 2nd-order method with optional churn, EDM Algorithm 2. NFE: 2n - 1 (the step to sigma = 0 is Euler).

    Churn: for sigma in [s_tmin, s_tmax], gamma = min(s_churn / n, sqrt(2) - 1), noise is added to move from sigma to
    sigma_hat = (1 + gamma) sigma, with std scaled by `s_noise` (lines 4-6); then one Heun step sigma_hat -> sigma_next.
    """
    sigmas = _check_inputs(x, sigmas, generator)
    noise_sampler = _noise_sampler(x, generator, noise_sampler)
    n = len(sigmas) - 1
    for i in range(n):
        sigma_next = sigmas[i + 1]
        x, sigma_hat = _churn(x, sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = _denoise(denoiser, x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        x_euler = x + d * (sigma_next - sigma_hat)  # line 8
        if sigma_next == 0:
            x = x_euler
        else:  # lines 9-11: trapezoidal correction with the slope at the Euler end point
            d_next = to_d(x_euler, sigma_next, _denoise(denoiser, x_euler, sigma_next))
            x = x + 0.5 * (d + d_next) * (sigma_next - sigma_hat)
        _report(callback, i, x, sigmas[i], sigma_next, denoised)
    return x


@torch.no_grad()
def sample_dpm_2(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DPM-Solver-2 in the k-diffusion form: a midpoint method whose midpoint is the geometric mean sigma.

    (Lu et al. 2022, Algorithm 1 with r = 1/2 in lambda = -log sigma, using the sigma-space ODE derivative.)
    NFE: 2n - 1 (the step to sigma = 0 is Euler).
    """
    sigmas = _check_inputs(x, sigmas, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        d = to_d(x, sigma, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
        else:
            sigma_mid = math.sqrt(sigma * sigma_next)  # midpoint in log-sigma
            x_mid = x + d * (sigma_mid - sigma)
            d_mid = to_d(x_mid, sigma_mid, _denoise(denoiser, x_mid, sigma_mid))
            x = x + d_mid * (sigma_next - sigma)
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) in sigma form. NFE: n.

    Dividing eq. 12 by sqrt(abar_{t-1}) with abar = 1 / (1 + sigma^2) gives

        x_next = x0_hat + sqrt(sigma_next^2 - c^2) eps_hat + c z,   eps_hat = (x - x0_hat) / sigma,

    where c = sigma_t(eta) / sqrt(abar_{t-1}) = eta sigma_next sqrt(sigma^2 - sigma_next^2) / sigma is exactly
    `_ancestral_step`'s sigma_up and the eps_hat coefficient its sigma_down. eta = 0 is therefore Euler's method on
    the probability-flow ODE (x0_hat + sigma_next eps_hat = x + eps_hat (sigma_next - sigma)), and eta = 1 is the
    DDPM ancestral sampler. `s_noise` scales the fresh noise z = noise_sampler(sigma, sigma_next).
    """
    _check_eta(eta)
    sigmas = _check_inputs(x, sigmas, generator)
    noise_sampler = _noise_sampler(x, generator, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        sigma_down, sigma_up = _ancestral_step(sigma, sigma_next, eta)
        x = denoised + sigma_down * to_d(x, sigma, denoised)
        if sigma_up > 0:
            x = x + noise_sampler(sigma, sigma_next) * (s_noise * sigma_up)
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


def sample_euler_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Ancestral Euler (k-diffusion): an Euler step to sigma_down, then fresh noise of std sigma_up. NFE: n.

    x + eps_hat (sigma_down - sigma) = x0_hat + sigma_down eps_hat, so this is `sample_ddim` with eta = 1 by default.
    """
    return sample_ddim(denoiser, x, sigmas, callback=callback, generator=generator, eta=eta, s_noise=s_noise,
                       noise_sampler=noise_sampler)


def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Ancestral sampling from the DDPM posterior q(x_next | x, x0 = x0_hat) (Ho et al. 2020, eqs. 6-7). NFE: n.

    In sigma form (x_sigma = x0 + sigma eps has independent increments, since beta_t / abar_t =
    sigma_t^2 - sigma_{t-1}^2) the posterior is Gaussian with

        mean = x0_hat + (sigma_next / sigma)^2 (x - x0_hat),   std = sigma_next sqrt(sigma^2 - sigma_next^2) / sigma,

    which is DDIM's eta = 1 step, so this is `sample_ddim(eta=1)`. On a DDPM table (`schedules.discrete`) with every
    timestep it reproduces the original sampler with the "beta tilde" variance.
    """
    return sample_ddim(denoiser, x, sigmas, callback=callback, generator=generator, eta=1.0, s_noise=s_noise,
                       noise_sampler=noise_sampler)


@torch.no_grad()
def sample_consistency(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    sigma_min: float = 0.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1). NFE: n.

    The denoiser is a consistency function f(x, sigma) (it maps a point of the ODE trajectory to its end, e.g. a
    `noisecraft.distill` student). Step i jumps to x0 = f(x, sigmas[i]); unless sigmas[i + 1] = 0 it re-noises to the
    next level, x = x0 + sqrt(sigmas[i + 1]^2 - sigma_min^2) z with z = noise_sampler(sigmas[i], sigmas[i + 1]),
    where sigma_min is the consistency model's boundary (f(x, sigma_min) = x). One step is f(x, sigma_max).
    """
    sigmas = _check_inputs(x, sigmas, generator)
    if not 0 <= sigma_min < sigmas[-2]:
        raise ValueError(f"sigma_min must be in [0, {sigmas[-2]}) (below every noise level); got {sigma_min!r}.")
    noise_sampler = _noise_sampler(x, generator, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        x = denoised
        if sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * math.sqrt(max(sigma_next**2 - sigma_min**2, 0.0))
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "lms": sample_lms,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "unipc": sample_unipc,
    "consistency": sample_consistency,
}
_TWO_CALLS_PER_STEP = {"heun", "dpm_2"}  # a second evaluation on every step except the one to sigma = 0


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler registered under `name` (see `SAMPLERS`)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {sorted(SAMPLERS)}.")
    return SAMPLERS[name]


def nfe(name: str, n_steps: int) -> int:
    """Denoiser calls of sampler `name` for `n_steps` steps on a schedule ending at sigma = 0."""
    get_sampler(name)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1; got {n_steps!r}.")
    return 2 * n_steps - 1 if name in _TWO_CALLS_PER_STEP else n_steps


def _churn(
    x: Tensor,
    sigma: float,
    n_steps: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    noise_sampler: NoiseSampler,
) -> tuple[Tensor, float]:
    """EDM Algorithm 2, lines 4-6: add noise to raise the level from sigma to sigma_hat = (1 + gamma) sigma."""
    gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    return x + noise_sampler(sigma, sigma_hat) * (s_noise * math.sqrt(sigma_hat**2 - sigma**2)), sigma_hat
