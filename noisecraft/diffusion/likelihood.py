"""Exact log-likelihoods of a denoiser through the probability-flow ODE (Chen et al. 2018; Song et al. 2021).

Model. With x_sigma = x0 + sigma eps and D(x, sigma) ~ E[x0 | x_sigma], the marginals p_sigma of the model are
transported by the probability-flow ODE (Karras et al. 2022, eq. 1 with s = 1, sigma(t) = t)

    dx / dsigma = f(x, sigma) = (x - D(x, sigma)) / sigma,

and along a solution the density changes by the instantaneous change of variables (Chen et al. 2018, "Neural ODEs",
Thm. 1; Song et al. 2021, "score SDE", Appendix D.2)

    d log p_sigma(x(sigma)) / dsigma = -div_x f(x(sigma), sigma) = -(N - tr dD/dx) / sigma,      N = dim of x.

Integrating from sigma_min (the data end) up to sigma_max (the prior end):

    log p_{sigma_min}(x) = log N(x(sigma_max); 0, sigma_max^2 I) + int_{sigma_min}^{sigma_max} div f dsigma,

with x(sigma_min) = x. The prior N(0, sigma_max^2 I) is the usual approximation of p_{sigma_max} (exact up to the
data's spread, O(N * var(x0) / sigma_max^2) nats).

Data term: what is returned is log p_{sigma_min}(x), the log-density at x of the model's data distribution convolved
with N(0, sigma_min^2 I) -- x is scored as a sample of x0 + sigma_min eps. No decoder term is added; as
sigma_min -> 0 it tends to the model's density at x0 itself (sigma_min = 0.002 is far below the 2/256 width of an
8-bit pixel bin in [-1, 1]). For discrete data dequantise first (``dequantize_images`` / images.likelihood).

Divergence: ``exact_trace=True`` takes tr dD/dx by N backward passes through one forward (for small N, e.g. the
Gaussian-mixture tests); otherwise Hutchinson's estimator tr J = E[v^T J v] (Hutchinson 1989) with ``hutchinson_samples``
Rademacher (or Gaussian) probes v, each one vector-Jacobian product. The probes are drawn once per call and kept
fixed along the trajectory (as score_sde does), so the adaptive solver sees a smooth right-hand side; since the
trajectory x(sigma) does not depend on them and the estimate is linear in v v^T, the log-likelihood estimate is
unbiased for the discretised ODE.

Integrators: ``steps=n`` -- Heun's method (the 2nd-order trapezoid predictor-corrector of EDM) in ln sigma on n
intervals of the Karras grid (rho = 7) from sigma_min to sigma_max, 2n denoiser calls; ``rtol=...`` -- adaptive RK45
(``scipy.integrate.solve_ivp``, Dormand-Prince) in ln sigma on the flattened state, float64 (one step size for
the whole batch). Coarse Heun grids are biased on sharp data (images; see ``_heun``); prefer RK45 for reported
numbers.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from noisecraft.diffusion.schedules import karras

PROBES = ("rademacher", "gaussian")


def log_likelihood(
    denoiser: Callable[..., Tensor],
    x: Tensor,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    exact_trace: bool = False,
    hutchinson_samples: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    rho: float = 7.0,
    prior: Callable[[Tensor], Tensor] | None = None,
    return_stats: bool = False,
    sampler_steps: int | None = None,
    **cond: Tensor,
) -> Tensor | tuple[Tensor, dict]:
    """log p_{sigma_min}(x) in nats per example, shape ``[B]`` (see the module docstring for the exact quantity).

    ``denoiser(x, sigma, **cond) -> x0_hat`` (sigma a ``[B]`` tensor). Give either ``steps`` (alias
    ``sampler_steps``: fixed-step Heun on n intervals of a Karras grid, 2n denoiser calls) or ``rtol`` (adaptive
    RK45 via scipy, ``atol`` defaults to ``rtol``); neither: RK45 with rtol = atol = 1e-5 (score_sde's setting). ``exact_trace``: the exact divergence (N backward passes per evaluation) instead of Hutchinson's
    estimate with ``hutchinson_samples`` ``probe`` vectors (``"rademacher"`` or ``"gaussian"``) drawn from
    ``generator``. Deterministic given ``generator``'s state. ``return_stats`` adds ``{"nfe": denoiser calls,
    "prior": log N(x(sigma_max)), "delta": the divergence integral}``. ``prior(x_end) -> [B]`` replaces the
    N(0, sigma_max^2 I) log-density at the end (e.g. the exact p_{sigma_max} of a Gaussian mixture in tests).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise TypeError("x must be a floating-point tensor of shape [B, ...].")
    if not 0 < sigma_min < sigma_max or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf; got {sigma_min} and {sigma_max}.")
    if steps is not None and rtol is not None:
        raise ValueError("give either steps (fixed-step Heun) or rtol (adaptive RK45), not both.")
    if sampler_steps is not None:
        if steps is not None and steps != sampler_steps:
            raise ValueError("steps and sampler_steps are the same option; give one.")
        steps = sampler_steps
    if steps is None and rtol is None:
        rtol = 1e-5
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer; got {steps!r}.")
    if rtol is not None and not rtol > 0:
        raise ValueError(f"rtol must be positive; got {rtol!r}.")
    if isinstance(hutchinson_samples, bool) or not isinstance(hutchinson_samples, int) or hutchinson_samples < 1:
        raise ValueError(f"hutchinson_samples must be a positive integer; got {hutchinson_samples!r}.")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}; got {probe!r}.")

    batch, dim = x.shape[0], x[0].numel()
    probes = None
    if not exact_trace:
        shape = (hutchinson_samples, *x.shape)
        device = generator.device if generator is not None else x.device
        if probe == "rademacher":
            probes = torch.randint(0, 2, shape, generator=generator, device=device).to(x.dtype) * 2 - 1
        else:
            probes = torch.randn(shape, generator=generator, device=device, dtype=x.dtype)
        probes = probes.to(x.device)
    counter = {"nfe": 0}

    def drift_and_divergence(y: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        """(dx/dsigma, div_x of it) at noise level sigma, both in y's dtype; div shape [B]."""
        counter["nfe"] += 1
        sigma_batch = torch.full((batch,), sigma, dtype=torch.promote_types(y.dtype, torch.float32),
                                 device=y.device)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            denoised = denoiser(y, sigma_batch, **cond)
            if isinstance(denoised, (tuple, list)):
                denoised = denoised[0]
            if denoised.shape != y.shape:
                raise ValueError(f"the denoiser must return a tensor shaped like x {tuple(y.shape)}; "
                                 f"got {tuple(denoised.shape)}.")
            trace = _trace(denoised, y, probes)
        return ((y - denoised) / sigma).detach(), ((dim - trace) / sigma).detach()

    if steps is not None:
        x_end, delta = _heun(drift_and_divergence, x, sigma_min, sigma_max, steps, rho)
    else:
        x_end, delta = _rk45(drift_and_divergence, x, sigma_min, sigma_max, rtol, atol or rtol)
    prior_term = _gaussian_log_prob(x_end, sigma_max) if prior is None else prior(x_end.to(x.dtype)).double()
    result = (prior_term + delta).to(x.dtype)
    if return_stats:
        return result, {"nfe": counter["nfe"], "prior": prior_term.detach(), "delta": delta.detach()}
    return result


def _trace(denoised: Tensor, y: Tensor, probes: Tensor | None) -> Tensor:
    """tr dD/dy per example: exact (one backward per dimension) or Hutchinson's mean of v^T (dD/dy) v."""
    batch = y.shape[0]
    if probes is None:
        flat = denoised.reshape(batch, -1)
        trace = torch.zeros(batch, dtype=y.dtype, device=y.device)
        for d in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, d].sum(), y, retain_graph=True)
            trace = trace + grad.reshape(batch, -1)[:, d]
        return trace
    estimates = []
    for k, v in enumerate(probes):
        (vjp,) = torch.autograd.grad(denoised, y, grad_outputs=v, retain_graph=k + 1 < len(probes))
        estimates.append((vjp * v).reshape(batch, -1).sum(1))
    return torch.stack(estimates).mean(0)


def _heun(fn, x: Tensor, sigma_min: float, sigma_max: float, steps: int, rho: float) -> tuple[Tensor, Tensor]:
    """Heun in u = ln sigma (dx/du = sigma f, d delta/du = sigma div f = N - tr dD/dx: smooth, where div f itself
    grows like 1/sigma) through the Karras grid from sigma_min up to sigma_max; returns (x(sigma_max), delta).
    Measured on 8x8 digits models: 4 steps in sigma gave -2.8 (EDM) and -66 (v) bits/dim where RK45 gave 5.3;
    4 steps in ln sigma 3.8 and 6.2, 64 steps 5.29 and 5.33."""
    grid = karras(steps + 1, sigma_min, sigma_max, rho=rho)[:-1].flip(0).tolist()  # steps + 1 ascending sigmas
    grid[0], grid[-1] = sigma_min, sigma_max

    def derivatives(y: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        d, div = fn(y, sigma)
        return sigma * d, sigma * div.double()

    delta = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    d, div = derivatives(x, grid[0])
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        h = math.log(sigma_next) - math.log(sigma)
        d_next, div_next = derivatives(x + h * d, sigma_next)
        x = x + 0.5 * h * (d + d_next)
        delta = delta + 0.5 * h * (div + div_next)
        d, div = derivatives(x, sigma_next) if sigma_next < sigma_max else (None, None)
    return x, delta


def _rk45(fn, x: Tensor, sigma_min: float, sigma_max: float, rtol: float, atol: float) -> tuple[Tensor, Tensor]:
    """Adaptive Dormand-Prince in u = ln sigma: dx/du = sigma f, d(delta)/du = sigma div f."""
    from scipy.integrate import solve_ivp

    shape, batch, numel = x.shape, x.shape[0], x.numel()

    def rhs(u: float, state: np.ndarray) -> np.ndarray:
        sigma = math.exp(u)
        y = torch.from_numpy(state[:numel]).reshape(shape).to(x.dtype).to(x.device)
        d, div = fn(y, sigma)
        out = torch.cat([(sigma * d).reshape(-1).double(), (sigma * div).double()])
        return out.cpu().numpy()

    start = np.concatenate([x.detach().double().reshape(-1).cpu().numpy(), np.zeros(batch)])
    solution = solve_ivp(rhs, (math.log(sigma_min), math.log(sigma_max)), start, method="RK45", rtol=rtol,
                         atol=atol)
    if not solution.success:
        raise RuntimeError(f"the likelihood ODE solver failed: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1])
    x_end = end[:numel].reshape(shape).to(x.device)
    return x_end, end[numel:].to(x.device)


def _gaussian_log_prob(x: Tensor, std: float) -> Tensor:
    """log N(x; 0, std^2 I) per example, float64."""
    flat = x.double().reshape(x.shape[0], -1)
    n = flat.shape[1]
    return -0.5 * (flat.pow(2).sum(1) / std**2 + n * math.log(2 * math.pi * std**2))


def dequantize_images(images: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """8-bit images in [-1, 1] -> uniformly dequantised ones: x_deq = -1 + (k + u) * 2/256, u ~ U(0, 1) per entry,
    with k = round((x + 1) * 255 / 2) in {0..255} the pixel's 8-bit level (the convention of Ho et al. 2020 and
    score_sde: bin k of width 2/256 in [-1, 1]). See ``bits_per_dim`` for the bound it gives."""
    levels = torch.round((images.clamp(-1, 1) + 1) * 127.5)
    device = generator.device if generator is not None else images.device
    u = torch.rand(images.shape, generator=generator, device=device, dtype=images.dtype).to(images.device)
    return -1.0 + (levels + u) * (2.0 / 256)


def bits_per_dim_from_log_likelihood(log_p: Tensor, dim: int) -> Tensor:
    """bits/dim = (-log p(x_deq) + N ln(256 / 2)) / (N ln 2): the dequantisation bound of ``dequantize_images``.

    Derivation: let P(k) = int_{bin k} p(x) dx be the model's probability of the 8-bit image k, the bins being cubes
    of side 2/256 (volume (2/256)^N) in [-1, 1]^N. With x_deq = x_k + u, u uniform on the bin,
    log P(k) = log E_u[p(x_deq)] + N ln(2/256) >= E_u[log p(x_deq)] + N ln(2/256) (Jensen), so
    -log2 P(k) / N <= E_u[-log p(x_deq) + N ln(256/2)] / (N ln 2). Without the +N ln(128) term (the density of
    [-1, 1]-scaled data is ~128^N times that of the discrete levels) bits/dim can come out negative.
    """
    return (-log_p.double() + dim * math.log(256 / 2)) / (dim * math.log(2))
