"""The VP / DDPM family written in sigma form.

A DDPM sample x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4) divided by sqrt(abar_t) is
x0 + sigma_t eps with

    sigma_t = sqrt((1 - abar_t) / abar_t),        abar_t = 1 / (1 + sigma_t^2),

so a VP model is the EDM process x_sigma = x0 + sigma eps with its input rescaled (Karras et al. 2022, sec. 2 and
Table 1). This module holds the discrete DDPM noise tables (`VPSchedule`) and the continuous VP-SDE noise level
sigma(t) of EDM Table 1 (`vp_sigma`, `vp_sigma_inv`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def vp_sigma(t: float | Tensor, beta_d: float = 19.9, beta_min: float = 0.1) -> Tensor:
    """Continuous VP-SDE noise level, EDM Table 1: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1).

    `t` in (0, 1] is the VP-SDE time of Song et al. 2021; `beta_d`, `beta_min` are the linear beta(t) slope and
    intercept (DDPM's linear betas in the continuous limit). Returns a float64 tensor for non-tensor input.
    """
    t = _as_float_tensor(t)
    return torch.expm1(0.5 * beta_d * t**2 + beta_min * t).sqrt()


def vp_sigma_inv(sigma: float | Tensor, beta_d: float = 19.9, beta_min: float = 0.1) -> Tensor:
    """Inverse of `vp_sigma` (EDM Table 1): t = (sqrt(beta_min^2 + 2 beta_d log(1 + sigma^2)) - beta_min) / beta_d."""
    sigma = _as_float_tensor(sigma)
    return ((beta_min**2 + 2 * beta_d * torch.log1p(sigma**2)).sqrt() - beta_min) / beta_d


class VPSchedule:
    """Discrete DDPM noise table (Ho et al. 2020) as sigmas: sigma_t = sqrt((1 - abar_t) / abar_t).

    Index t = 0 is the least noisy step, t = num_steps - 1 the noisiest, so `sigmas` ascends with t. Tables are
    kept in float64 on the CPU: the cumulative product of 1000 betas loses digits in float32.
    """

    def __init__(self, betas: Tensor, *, _recipe: dict | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(f"betas must be a 1-D tensor with at least 2 entries; got shape {tuple(betas.shape)}.")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta must lie strictly between 0 and 1 (they are per-step noise variances).")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)  # abar_t, Ho et al. eq. 4
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self._log_sigmas = self.sigmas.log()
        # How to rebuild this table from a few numbers (to_dict); raw betas otherwise.
        self._recipe = _recipe or {"kind": "betas", "betas": betas.tolist()}

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "VPSchedule":
        """Linear betas of DDPM (Ho et al. 2020, sec. 4): beta_t evenly spaced from beta_start to beta_end."""
        _check_num_steps(num_steps)
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1; got beta_start={beta_start}, beta_end={beta_end}.")
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        recipe = {"kind": "linear", "num_steps": num_steps, "beta_start": beta_start, "beta_end": beta_end}
        return cls(betas, _recipe=recipe)

    @classmethod
    def scaled_linear(cls, num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> "VPSchedule":
        """Latent-diffusion ("Stable Diffusion") betas: sqrt(beta_t) evenly spaced (Rombach et al. 2022 code)."""
        _check_num_steps(num_steps)
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1; got beta_start={beta_start}, beta_end={beta_end}.")
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
        recipe = {"kind": "scaled_linear", "num_steps": num_steps, "beta_start": beta_start, "beta_end": beta_end}
        return cls(betas, _recipe=recipe)

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "VPSchedule":
        """Cosine schedule, Nichol & Dhariwal 2021 eq. 17: abar(t) = f(t) / f(0), f(t) = cos((t/T + s)/(1 + s) pi/2)^2.

        betas_t = 1 - abar(t) / abar(t - 1), clipped at `max_beta` to avoid the singularity at t = T (their sec. 3.2).
        """
        _check_num_steps(num_steps)
        if not s >= 0 or not 0 < max_beta < 1:
            raise ValueError(f"need s >= 0 and 0 < max_beta < 1; got s={s}, max_beta={max_beta}.")
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
        recipe = {"kind": "cosine", "num_steps": num_steps, "s": s, "max_beta": max_beta}
        return cls(betas, _recipe=recipe)

    @property
    def num_steps(self) -> int:
        return self.betas.numel()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: float | Tensor) -> Tensor:
        """Continuous timestep in [0, num_steps - 1] for noise level(s) `sigma`, linear in log-sigma between entries.

        Sigmas outside the table clamp to its ends. Returns a tensor shaped like `sigma`, in sigma's dtype and
        device (float64 for Python numbers).
        """
        sigma = _as_float_tensor(sigma)
        log_sigmas = self._log_sigmas.to(device=sigma.device, dtype=_table_dtype(sigma))
        log_sigma = sigma.to(log_sigmas.dtype).log()
        # Bracketing entries: log_sigmas[high - 1] <= log_sigma < log_sigmas[high].
        high = torch.searchsorted(log_sigmas, log_sigma.contiguous()).clamp(1, self.num_steps - 1)
        low = high - 1
        frac = (log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
        return (low + frac.clamp(0, 1)).to(sigma.dtype)

    def t_to_sigma(self, t: float | Tensor) -> Tensor:
        """Inverse of `sigma_to_t`: the noise level at continuous timestep(s) `t`, interpolating log-sigma."""
        t = _as_float_tensor(t)
        log_sigmas = self._log_sigmas.to(device=t.device, dtype=_table_dtype(t))
        t_clamped = t.to(log_sigmas.dtype).clamp(0, self.num_steps - 1)
        low = t_clamped.floor().long().clamp(max=self.num_steps - 2)
        frac = t_clamped - low
        return ((1 - frac) * log_sigmas[low] + frac * log_sigmas[low + 1]).exp().to(t.dtype)

    def to_dict(self) -> dict:
        """JSON-able description, e.g. {"kind": "linear", "num_steps": 1000, ...}; inverse of `from_dict`."""
        return dict(self._recipe)

    @classmethod
    def from_dict(cls, d: dict) -> "VPSchedule":
        """Rebuild a schedule from `to_dict()` output."""
        if not isinstance(d, dict) or "kind" not in d:
            raise ValueError(f"expected a dict with a 'kind' key (as written by VPSchedule.to_dict()); got {d!r}.")
        options = {k: v for k, v in d.items() if k != "kind"}
        builders = {"linear": cls.linear, "scaled_linear": cls.scaled_linear, "cosine": cls.cosine}
        if d["kind"] == "betas":
            return cls(torch.tensor(options["betas"], dtype=torch.float64))
        if d["kind"] not in builders:
            raise ValueError(f"unknown VP schedule kind {d['kind']!r}; valid kinds: {sorted(builders) + ['betas']}.")
        return builders[d["kind"]](**options)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self._recipe.items() if k not in ("kind", "betas"))
        return f"VPSchedule.{self._recipe['kind']}({options or f'num_steps={self.num_steps}'})"


def _as_float_tensor(value: float | Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value if value.is_floating_point() else value.double()
    return torch.as_tensor(value, dtype=torch.float64)


def _table_dtype(like: Tensor) -> torch.dtype:
    # Interpolate in float64 wherever the backend has it (MPS does not).
    return torch.float32 if like.device.type == "mps" else torch.float64


def _check_num_steps(num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2; got {num_steps!r}.")
