"""Shared plumbing of the samplers in `samplers.py` and `multistep.py`: argument checks, the denoiser call with a
per-example sigma, fresh noise (the `noise_sampler` hook) and the progress callback."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]
Callback = Callable[[dict], None]
NoiseSampler = Callable[[float, float], Tensor]


def to_d(x: Tensor, sigma: float, denoised: Tensor) -> Tensor:
    """The ODE derivative dx/dsigma = (x - D(x, sigma)) / sigma (EDM eq. 3 with sigma(t) = t); also eps_hat."""
    return (x - denoised) / sigma


def _check_inputs(x: Tensor, sigmas: Tensor, generator: torch.Generator | None) -> list[float]:
    """Validate the common arguments; return the schedule as Python floats."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim == 0:
        raise TypeError("x must be a floating-point tensor with a batch dimension, shape [B, ...].")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 entries (n steps need n + 1); got {tuple(sigmas.shape)}.")
    if not bool(torch.isfinite(sigmas).all()) or not bool((sigmas[:-1] > 0).all()) or sigmas[-1] < 0:
        raise ValueError("sigmas must be finite and positive; only the last one may be 0.")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("sigmas must be strictly descending (build them with noisecraft.diffusion.schedules).")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; create it on x's device.")
    return sigmas.tolist()


def _denoise(denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
    """Call the denoiser with a per-example `[B]` sigma (float32 or wider, so half-precision x keeps sigma exact)."""
    sigma_batch = torch.full((x.shape[0],), sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
    denoised = denoiser(x, sigma_batch)
    if not isinstance(denoised, Tensor) or denoised.shape != x.shape:
        shape = tuple(denoised.shape) if isinstance(denoised, Tensor) else type(denoised).__name__
        raise ValueError(f"the denoiser must return a tensor shaped like x {tuple(x.shape)}; got {shape}.")
    return denoised.to(x.dtype)


def default_noise_sampler(x: Tensor, generator: torch.Generator | None) -> NoiseSampler:
    """The noise every stochastic sampler draws unless given a `noise_sampler`: i.i.d. N(0, I) shaped like x, from
    `generator`, one `torch.randn` per call (the sigmas are ignored)."""

    def noise_sampler(sigma: float, sigma_next: float) -> Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    return noise_sampler


def _noise_sampler(x: Tensor, generator: torch.Generator | None, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    """`noise_sampler` with its output checked and cast to x's dtype, or the default one if None."""
    if noise_sampler is None:
        return default_noise_sampler(x, generator)

    def checked(sigma: float, sigma_next: float) -> Tensor:
        noise = noise_sampler(sigma, sigma_next)
        if not isinstance(noise, Tensor) or noise.shape != x.shape:
            got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise_sampler(sigma, sigma_next) must return a tensor shaped like x {tuple(x.shape)}; "
                             f"got {got}.")
        return noise.to(dtype=x.dtype, device=x.device)

    return checked


def _report(callback: Callback | None, i: int, x: Tensor, sigma: float, sigma_next: float, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def _check_order(value: int, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}.")


def _check_eta(eta: float) -> None:
    if not eta >= 0 or not math.isfinite(eta):
        raise ValueError(f"eta must be a finite number >= 0 (0 = deterministic ODE); got {eta!r}.")
