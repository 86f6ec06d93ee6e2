"""Multistep samplers: one denoiser call per step, reusing the previous steps' estimates (linear multistep,
DPM-Solver++ 2M / 2M SDE / 3M SDE, UniPC); registered in `samplers.SAMPLERS` with the single-step ones.

Conventions (inputs, callback, the step to sigma = 0) are those of `samplers.py`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from noisecraft.diffusion.sampling_core import (
    Callback,
    Denoiser,
    NoiseSampler,
    _check_eta,
    _check_inputs,
    _check_order,
    _denoise,
    _noise_sampler,
    _report,
    to_d,
)


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
    noise_sampler: NoiseSampler | None = None,
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
    noise_sampler = _noise_sampler(x, generator, noise_sampler)
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
                z = noise_sampler(sigma, sigma_next)
                x = x + z * (s_noise * sigma_next * math.sqrt(-math.expm1(-2 * eta * h)))
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
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DPM-Solver++(2M) SDE: the 2M update with the SDE's e^{-eta h} damping and fresh noise. NFE: n.

    eta = 1 discretizes the reverse SDE, eta = 0 is `sample_dpmpp_2m`; `solver_type` is 'midpoint' or 'heun' (see
    `_sample_dpmpp_multistep`), `s_noise` scales the injected noise z = noise_sampler(sigma, sigma_next) (see the
    noise hook in `samplers.py`).
    """
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun'; got {solver_type!r}.")
    _check_eta(eta)
    return _sample_dpmpp_multistep(
        denoiser, x, sigmas, callback=callback, generator=generator,
        order=2, eta=eta, s_noise=s_noise, solver_type=solver_type, noise_sampler=noise_sampler
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
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DPM-Solver++(3M) SDE (k-diffusion): the 3-step multistep update with SDE noise; eta = 0 is the ODE. NFE: n.

    See `_sample_dpmpp_multistep` for the phi_2 / phi_3 terms and why the measured order is ~2.
    """
    _check_eta(eta)
    return _sample_dpmpp_multistep(
        denoiser, x, sigmas, callback=callback, generator=generator,
        order=3, eta=eta, s_noise=s_noise, solver_type="heun", noise_sampler=noise_sampler
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
