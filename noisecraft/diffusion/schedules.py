"""Sampling noise schedules: where the n steps of a sampler put their noise levels.

Every schedule is a function `(n, sigma_min, sigma_max, **options) -> sigmas`, a 1-D float64 tensor of n + 1 noise
levels: sigmas[0] = sigma_max, strictly descending to sigmas[n - 1] = sigma_min, and sigmas[n] = 0 so that the last
step lands on clean data. With n = 1 the single step goes from sigma_max straight to 0. (Two exceptions to the
endpoints: `discrete` snaps to the entries of a DDPM table, and `few_step`, for distilled students, stops short of
sigma_min; see their docstrings.)
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from noisecraft.diffusion.vp import VPSchedule, vp_sigma, vp_sigma_inv


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.

    Larger `rho` concentrates steps at low noise; rho = 7 is the paper's choice, rho = 1 is `linear`.
    """
    _check_range(n, sigma_min, sigma_max)
    _check_positive(rho, "rho")
    ramp = _ramp(n)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log-sigma, i.e. in the half log-SNR lambda = -log(sigma).

    The time-uniform-in-lambda spacing that DPM-Solver recommends (Lu et al. 2022, sec. 3.4); also karras' rho -> inf.
    """
    _check_range(n, sigma_min, sigma_max)
    return _append_zero(torch.exp(math.log(sigma_max) + _ramp(n) * (math.log(sigma_min) - math.log(sigma_max))))


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """Polynomial in log-sigma: log sigma_i = log sigma_min + (1 - i/(n-1))^rho (log sigma_max - log sigma_min).

    rho = 1 is `exponential`; rho > 1 spends more steps at low noise.
    """
    _check_range(n, sigma_min, sigma_max)
    _check_positive(rho, "rho")
    log_min, log_max = math.log(sigma_min), math.log(sigma_max)
    return _append_zero(torch.exp(log_min + (1 - _ramp(n)) ** rho * (log_max - log_min)))


def vp(
    n: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    beta_d: float = 19.9,
    beta_min: float = 0.1,
    eps_s: float = 1e-3,
) -> Tensor:
    """Uniform in the VP-SDE time t (Song et al. 2021), sigma_i = sigma(t_i) of EDM Table 1.

    EDM Table 1 takes t_i = 1 + i/(n-1) (eps_s - 1), i.e. t from 1 down to eps_s. Here the requested range overrides
    those ends: t runs uniformly from t(sigma_max) to t(sigma_min) with t = `vp_sigma_inv`, so the endpoints are
    exactly sigma_max and sigma_min like every other schedule. Pass None for either to keep the VP default
    end (sigma_max = sigma(1) ~ 152, sigma_min = sigma(eps_s) ~ 0.0105 for the default betas).
    """
    sigma_min = float(vp_sigma(eps_s, beta_d, beta_min)) if sigma_min is None else sigma_min
    sigma_max = float(vp_sigma(1.0, beta_d, beta_min)) if sigma_max is None else sigma_max
    _check_range(n, sigma_min, sigma_max)
    t_max, t_min = float(vp_sigma_inv(sigma_max, beta_d, beta_min)), float(vp_sigma_inv(sigma_min, beta_d, beta_min))
    return _append_zero(vp_sigma(t_max + _ramp(n) * (t_min - t_max), beta_d, beta_min))


def linear(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in sigma (a baseline: it wastes most steps at high noise)."""
    _check_range(n, sigma_min, sigma_max)
    return _append_zero(sigma_max + _ramp(n) * (sigma_min - sigma_max))


def discrete(
    n: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    vp_schedule: VPSchedule | None = None,
    spacing: str = "trailing",
) -> Tensor:
    """n sigmas picked from the entries of a DDPM table, for models trained on discrete timesteps.

    Only table entries with sigma_min <= sigma_t <= sigma_max are used (None = the table's own end); on those M
    entries, with local index u = 0 (least noisy) ... M - 1, the n timesteps follow the usual DDIM / diffusers
    spacings, from noisiest to cleanest:
      "linspace": u_k = round(k (M - 1) / (n - 1))              (hits both ends)
      "leading":  u_k = k floor(M / n), k = n-1, ..., 0           (DDIM; starts below the noisiest entry)
      "trailing": u_k = round(M - k M / n) - 1, k = 0, ..., n-1  (starts at the noisiest entry and never skips the
                  top of the range; Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed")
    `vp_schedule` defaults to `VPSchedule.linear()` (DDPM's 1000 steps).
    """
    table = VPSchedule.linear() if vp_schedule is None else vp_schedule
    if not isinstance(table, VPSchedule):
        raise TypeError(f"vp_schedule must be a VPSchedule (or None for DDPM's linear table); got {type(table)}.")
    _check_range(
        n,
        table.sigma_min if sigma_min is None else sigma_min,
        table.sigma_max if sigma_max is None else sigma_max,
    )
    # Table indices inside [sigma_min, sigma_max]; the 1e-6 keeps an endpoint that equals an entry.
    t_low = 0 if sigma_min is None else max(0, math.ceil(float(table.sigma_to_t(sigma_min)) - 1e-6))
    t_high = table.num_steps - 1 if sigma_max is None else math.floor(float(table.sigma_to_t(sigma_max)) + 1e-6)
    num_available = t_high - t_low + 1
    if n > num_available:
        raise ValueError(
            f"the table has only {num_available} entries with sigma in [{sigma_min}, {sigma_max}]; "
            f"ask for n <= {num_available} steps or widen the range."
        )
    k = torch.arange(n, dtype=torch.float64)
    if spacing == "linspace":
        local = torch.round((num_available - 1) * (1 - _ramp(n)))
    elif spacing == "leading":
        local = (n - 1 - k) * (num_available // n)
    elif spacing == "trailing":
        local = torch.round(num_available - k * num_available / n) - 1
    else:
        raise ValueError(f"unknown spacing {spacing!r}; valid spacings: ['leading', 'linspace', 'trailing'].")
    return _append_zero(table.sigmas[t_low + local.long()])


def few_step(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """The noise levels of a few-step (distilled) sampler: Karras' rho-spacing (eq. 5) at u = i/n for i = 0..n-1,

        sigma_i = (sigma_max^(1/rho) + (i/n) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,   then sigma_n = 0,

    i.e. `karras(n + 1)` without its sigma_min: no call is spent at sigma_min, where a consistency model is the
    identity. The grid is nested under halving (level i of n steps is level 2i of 2n), as progressive distillation
    (Salimans & Ho 2022, Algorithm 2) needs; n = 1 is the single step sigma_max -> 0.
    """
    _check_range(n, sigma_min, sigma_max)
    _check_positive(rho, "rho")
    ramp = torch.arange(n, dtype=torch.float64) / n
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "karras": karras,
    "few_step": few_step,
    "exponential": exponential,
    "polyexponential": polyexponential,
    "vp": vp,
    "linear": linear,
    "discrete": discrete,
}


def get_schedule(name: str) -> Callable[..., Tensor]:
    """The schedule function registered under `name` (see `SCHEDULES`)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid names: {sorted(SCHEDULES)}.")
    return SCHEDULES[name]


def _ramp(n: int) -> Tensor:
    """i / (n - 1) for i = 0 .. n-1 in float64 (a single 0 when n = 1)."""
    return torch.linspace(0, 1, n, dtype=torch.float64)


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of sampling steps) must be an integer >= 1; got {n!r}.")
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(
            f"need 0 < sigma_min < sigma_max < inf; got sigma_min={sigma_min}, sigma_max={sigma_max}. "
            "sigma_min must be positive because the last step to sigma = 0 is added by the schedule itself."
        )


def _check_positive(value: float, name: str) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
