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

Number of denoiser calls for n steps ending at sigma = 0 (`nfe`): 2n - 1 for `heun` and `dpm_2`, n for the rest.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]
Callback = Callable[[dict], None]


def to_d(x: Tensor, sigma: float, denoised: Tensor) -> Tensor:
    """The ODE derivative dx/dsigma = (x - D(x, sigma)) / sigma (EDM eq. 3 with sigma(t) = t); also eps_hat."""
    return (x - denoised) / sigma


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
) -> Tensor:
    """Euler's method on the probability-flow ODE (EDM Algorithm 2 without the 2nd-order correction). NFE: n.

    `s_churn`, `s_tmin`, `s_tmax`, `s_noise` add EDM's stochastic churn (Algorithm 2, lines 4-6); 0 churn is the ODE.
    """
    sigmas = _check_inputs(x, sigmas, generator)
    n = len(sigmas) - 1
    for i in range(n):
        sigma_next = sigmas[i + 1]
        x, sigma_hat = _churn(x, sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, generator)
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
) -> Tensor:
    """Heun's 2nd-order method with optional churn, EDM Algorithm 2. NFE: 2n - 1 (the step to sigma = 0 is Euler).

    Churn: for sigma in [s_tmin, s_tmax], gamma = min(s_churn / n, sqrt(2) - 1), noise is added to move from sigma to
    sigma_hat = (1 + gamma) sigma, with std scaled by `s_noise` (lines 4-6); then one Heun step sigma_hat -> sigma_next.
    """
    sigmas = _check_inputs(x, sigmas, generator)
    n = len(sigmas) - 1
    for i in range(n):
        sigma_next = sigmas[i + 1]
        x, sigma_hat = _churn(x, sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, generator)
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
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) in sigma form. NFE: n.

    Dividing eq. 12 by sqrt(abar_{t-1}) with abar = 1 / (1 + sigma^2) gives

        x_next = x0_hat + sqrt(sigma_next^2 - c^2) eps_hat + c z,   eps_hat = (x - x0_hat) / sigma,

    where c = sigma_t(eta) / sqrt(abar_{t-1}) = eta sigma_next sqrt(sigma^2 - sigma_next^2) / sigma is exactly
    `_ancestral_step`'s sigma_up and the eps_hat coefficient its sigma_down. eta = 0 is therefore Euler's method on
    the probability-flow ODE (x0_hat + sigma_next eps_hat = x + eps_hat (sigma_next - sigma)), and eta = 1 is the
    DDPM ancestral sampler. `s_noise` scales the fresh noise z.
    """
    _check_eta(eta)
    sigmas = _check_inputs(x, sigmas, generator)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        sigma_down, sigma_up = _ancestral_step(sigma, sigma_next, eta)
        x = denoised + sigma_down * to_d(x, sigma, denoised)
        if sigma_up > 0:
            x = x + _noise(x, generator) * (s_noise * sigma_up)
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
) -> Tensor:
    """Ancestral Euler (k-diffusion): an Euler step to sigma_down, then fresh noise of std sigma_up. NFE: n.

    x + eps_hat (sigma_down - sigma) = x0_hat + sigma_down eps_hat, so this is `sample_ddim` with eta = 1 by default.
    """
    return sample_ddim(denoiser, x, sigmas, callback=callback, generator=generator, eta=eta, s_noise=s_noise)


def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    s_noise: float = 1.0,
) -> Tensor:
    """Ancestral sampling from the DDPM posterior q(x_next | x, x0 = x0_hat) (Ho et al. 2020, eqs. 6-7). NFE: n.

    In sigma form (x_sigma = x0 + sigma eps has independent increments, since beta_t / abar_t =
    sigma_t^2 - sigma_{t-1}^2) the posterior is Gaussian with

        mean = x0_hat + (sigma_next / sigma)^2 (x - x0_hat),   std = sigma_next sqrt(sigma^2 - sigma_next^2) / sigma,

    which is DDIM's eta = 1 step, so this is `sample_ddim(eta=1)`. On a DDPM table (`schedules.discrete`) with every
    timestep it reproduces the original sampler with the "beta tilde" variance.
    """
    return sample_ddim(denoiser, x, sigmas, callback=callback, generator=generator, eta=1.0, s_noise=s_noise)


@torch.no_grad()
def sample_lms(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    order: int = 4,
) -> Tensor:
    """Linear multistep (Adams-Bashforth in sigma, as in k-diffusion / PNDM's spirit). NFE: n.

    x_next = x + sum_j c_j d_{i-j}, with c_j the integral over [sigma_i, sigma_next] of the Lagrange basis
    polynomial through the last `order` nodes sigma_i, sigma_{i-1}, ...; lower order while the history fills up.
    """
    _check_order(order, "order", 1, 4)
    sigmas = _check_inputs(x, sigmas, generator)
    derivatives: list[Tensor] = []  # most recent first
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        # The last step to sigma = 0 is a multistep step too (x + d (0 - sigma) alone would just return `denoised`).
        derivatives = [to_d(x, sigma, denoised)] + derivatives[: order - 1]
        nodes = [sigmas[i - j] for j in range(len(derivatives))]  # sigma_i, sigma_{i-1}, ...
        coefficients = _lms_coefficients(nodes, sigma, sigma_next)
        x = x + sum(c * d for c, d in zip(coefficients, derivatives))
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


def _lms_coefficients(nodes: list[float], sigma: float, sigma_next: float) -> list[float]:
    """Integrals over [sigma, sigma_next] of the Lagrange basis polynomials on `nodes` (exact, via numpy)."""
    coefficients = []
    for j, node in enumerate(nodes):
        others = nodes[:j] + nodes[j + 1 :]
        basis = np.polynomial.Polynomial.fromroots(others) if others else np.polynomial.Polynomial([1.0])
        basis = basis / math.prod(node - other for other in others)
        antiderivative = basis.integ()
        coefficients.append(float(antiderivative(sigma_next) - antiderivative(sigma)))
    return coefficients


@torch.no_grad()
def _sample_dpmpp_multistep(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None,
    generator: torch.Generator | None,
    order: int,
    eta: float,
    s_noise: float,
    solver_type: str,
) -> Tensor:
    """Shared loop of DPM-Solver++(2M), (2M) SDE and (3M) SDE: exponential integrators in lambda = -log sigma.

    Data-prediction form of Lu et al. 2022 ("DPM-Solver++", eq. 9 / Algorithm 2) with alpha = 1, plus the SDE
    variant that shrinks the deterministic part by e^{-eta h} and re-injects noise (their sec. 4 / Gonzalez et al.
    2023 "SEEDS"). With h = lambda_next - lambda and H = (1 + eta) h:

        x_next = (sigma_next / sigma) e^{-eta h} x + (1 - e^{-H}) D_0 + [multistep correction]
                 + sigma_next sqrt(1 - e^{-2 eta h}) z.

    The correction extrapolates D in lambda from the previous steps' denoised outputs D_1, D_2 with r_k = h_k / h.
    2nd order: 'midpoint' (1 - e^{-H}) / 2 * (D_0 - D_1) / r_1 (DPM-Solver++(2M)) or 'heun' phi_2(H) (D_0 - D_1) / r_1
    with phi_2(H) = 1 - (1 - e^{-H}) / H; 3rd order uses the DPM-Solver reference code's d1 ~ h D' and
    d2 ~ h^2 D'' / 2 and adds phi_2 d1 - phi_3 d2, phi_3 = phi_2 / H - 1/2. Kept for compatibility with k-diffusion,
    that d2 term carries half of its Taylor weight (-phi_3 h^2 D''), so its local error is O(h^3); `sample_unipc`
    with order=3 is the Taylor-consistent 3rd-order multistep. Lower order is used while the history fills up; the
    first step is DPM-Solver++ 1 (= DDIM), whose O(h^2) local error caps the global order of this family at 2.
    """
    sigmas = _check_inputs(x, sigmas, generator)
    history: list[tuple[float, Tensor]] = []  # (h, denoised) of earlier steps, most recent first
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
            h = math.inf
        else:
            h = math.log(sigma / sigma_next)
            h_eta = (1 + eta) * h
            x = (sigma_next / sigma) * math.exp(-eta * h) * x - math.expm1(-h_eta) * denoised
            x = x + _multistep_correction(denoised, history, h, h_eta, solver_type)
            if eta > 0:
                x = x + _noise(x, generator) * (s_noise * sigma_next * math.sqrt(-math.expm1(-2 * eta * h)))
        history = [(h, denoised)] + history[: order - 2]  # keep the order - 1 most recent
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


def _multistep_correction(
    denoised: Tensor, history: list[tuple[float, Tensor]], h: float, h_eta: float, solver_type: str
) -> Tensor | float:
    """The higher-order terms of `_sample_dpmpp_multistep` from the previous (h_k, D_k), most recent first."""
    if not history:
        return 0.0
    phi_2 = math.expm1(-h_eta) / h_eta + 1
    h_1, denoised_1 = history[0]
    d1_0 = (denoised - denoised_1) / (h_1 / h)  # first divided difference, scaled to the step h
    if len(history) == 1:
        if solver_type == "midpoint":
            return -0.5 * math.expm1(-h_eta) * d1_0
        return phi_2 * d1_0
    h_2, denoised_2 = history[1]
    r_0, r_1 = h_1 / h, h_2 / h
    d1_1 = (denoised_1 - denoised_2) / r_1
    d1 = d1_0 + (d1_0 - d1_1) * (r_0 / (r_0 + r_1))
    d2 = (d1_0 - d1_1) / (r_0 + r_1)
    phi_3 = phi_2 / h_eta - 0.5
    return phi_2 * d1 - phi_3 * d2


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DPM-Solver++(2M), Lu et al. 2022, Algorithm 2: 2nd-order multistep, 1st order on the first step. NFE: n."""
    return _sample_dpmpp_multistep(
        denoiser, x, sigmas, callback=callback, generator=generator,
        order=2, eta=0.0, s_noise=1.0, solver_type="midpoint"
    )


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE: the 2M update with the SDE's e^{-eta h} damping and fresh noise. NFE: n.

    eta = 1 discretizes the reverse SDE, eta = 0 is `sample_dpmpp_2m`; `solver_type` is 'midpoint' or 'heun' (see
    `_sample_dpmpp_multistep`), `s_noise` scales the injected noise.
    """
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun'; got {solver_type!r}.")
    _check_eta(eta)
    return _sample_dpmpp_multistep(
        denoiser, x, sigmas, callback=callback, generator=generator,
        order=2, eta=eta, s_noise=s_noise, solver_type=solver_type
    )


def sample_dpmpp_3m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver++(3M) SDE (k-diffusion): the 3-step multistep update with SDE noise; eta = 0 is the ODE. NFE: n.

    See `_sample_dpmpp_multistep` for the phi_2 / phi_3 terms and why the measured order is ~2.
    """
    _check_eta(eta)
    return _sample_dpmpp_multistep(
        denoiser, x, sigmas, callback=callback, generator=generator,
        order=3, eta=eta, s_noise=s_noise, solver_type="heun"
    )


@torch.no_grad()
def sample_unipc(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    order: int = 2,
    use_corrector: bool = True,
) -> Tensor:
    """UniPC-bh2 (Zhao et al. 2023): UniP-p multistep predictor + UniC corrector, data prediction. NFE: n.

    At each step the new denoiser output D(x_i) first corrects x_i (UniC, re-solving the previous step with D at its
    end point, which raises the order by one at no extra cost), then the predictor UniP-p steps to sigma_next.
    Orders warm up from 1. `order` in {1, 2, 3}; `use_corrector=False` leaves UniP alone (UniP-2 = DPM-Solver++(2M)).
    The corrector is skipped when the step lands on sigma = 0 (the result there is D itself).
    """
    _check_order(order, "order", 1, 3)
    sigmas = _check_inputs(x, sigmas, generator)
    history: list[tuple[float, Tensor]] = []  # (sigma, denoised) of the last `order` steps, most recent last
    x_start = x  # where the last predictor step started (at history[-1]'s sigma)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        if use_corrector and history and sigma_next > 0:
            x = _unipc_update(x_start, sigma, history, denoised_end=denoised)
        history = (history + [(sigma, denoised)])[-order:]
        if sigma_next == 0:
            x = denoised
        else:
            x_start = x
            x = _unipc_update(x, sigma_next, history, denoised_end=None)
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


def _unipc_update(
    x: Tensor, sigma_next: float, history: list[tuple[float, Tensor]], denoised_end: Tensor | None
) -> Tensor:
    """One UniP (denoised_end None) or UniC (denoised_end = D at sigma_next) step from history[-1]'s sigma.

    With D_0 = D at sigma (history[-1]), h = lambda_next - lambda (lambda = -log sigma), the earlier outputs D_k of
    `history` at r_k = (lambda_k - lambda) / h < 0, and B(h) = e^{-h} - 1 ("bh2"):

        x_next = (sigma_next / sigma) x - (e^{-h} - 1) D_0 - B(h) sum_k rho_k (D_k - D_0) / r_k

    (Zhao et al. 2023, sec. 3, data prediction with alpha = 1). UniC adds the node r = 1 carrying D at sigma_next,
    which lifts a predictor of order p = len(history) to order p + 1 (their Theorem 3.1; UniP: Corollary 3.2). rho
    solves the order conditions `_unipc_rhos`; with a single node rho = 1/2 (its h -> 0 limit), as in their code.
    """
    sigma, denoised_0 = history[-1]
    h = math.log(sigma / sigma_next)
    earlier = history[-2::-1]  # most recent first
    ratios = [math.log(sigma / sigma_k) / h for sigma_k, _ in earlier]
    differences = [(denoised_k - denoised_0) / r for (_, denoised_k), r in zip(earlier, ratios)]
    if denoised_end is not None:
        ratios.append(1.0)
        differences.append(denoised_end - denoised_0)
    x_next = (sigma_next / sigma) * x - math.expm1(-h) * denoised_0  # DPM-Solver++ 1 (= DDIM)
    if not differences:
        return x_next
    b_h = math.expm1(-h)
    rhos = [0.5] if len(differences) == 1 else _unipc_rhos(ratios, h, b_h)
    return x_next - b_h * sum(rho * diff for rho, diff in zip(rhos, differences))


def _unipc_rhos(ratios: list[float], h: float, b_h: float) -> list[float]:
    """Solve the UniPC order conditions sum_k rho_k r_k^(m-1) = g_m, m = 1..len(ratios), for the "bh2" B(h).

    g_m = m! psi_m / B(h) with psi_m = (e^{-h} - sum_{j<=m} (-h)^j / j!) / (-h)^m, the Taylor remainders of the
    exponential integrator, built by the recursion psi_{m+1} = psi_m / (-h) - 1 / (m+1)!.
    """
    neg_h = -h
    phi = math.expm1(neg_h) / neg_h - 1  # psi_1
    g, factorial = [], 1
    for m in range(1, len(ratios) + 1):
        g.append(phi * factorial / b_h)
        factorial *= m + 1
        phi = phi / neg_h - 1 / factorial
    vandermonde = np.vander(np.array(ratios), increasing=True).T  # row m: r_k^m
    return np.linalg.solve(vandermonde, np.array(g)).tolist()


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


# ---------------------------------------------------------------------------------------------- shared plumbing


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


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _churn(
    x: Tensor,
    sigma: float,
    n_steps: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, float]:
    """EDM Algorithm 2, lines 4-6: add noise to raise the level from sigma to sigma_hat = (1 + gamma) sigma."""
    gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    return x + _noise(x, generator) * (s_noise * math.sqrt(sigma_hat**2 - sigma**2)), sigma_hat


def _report(callback: Callback | None, i: int, x: Tensor, sigma: float, sigma_next: float, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def _check_order(value: int, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}.")


def _check_eta(eta: float) -> None:
    if not eta >= 0 or not math.isfinite(eta):
        raise ValueError(f"eta must be a finite number >= 0 (0 = deterministic ODE); got {eta!r}.")
