"""Preconditioning: raw network F -> denoiser D(x, sigma) ~ E[x0 | x] (Karras et al. 2022, "EDM", eq. 7, Table 1).

Every parameterization is the same wrapper

    D(x; sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x; c_noise(sigma))

with x = x0 + sigma * eps; only the four coefficients differ. So an epsilon-prediction DDPM network, a
v-prediction network and an EDM network all expose the same denoiser and work with every sampler.

A network that also predicts something else in the same call returns a tuple `(F, *aux)`; the preconditioner then
returns `(D, *aux)` with aux untouched (the tabular model's joint network returns `(F, logits)`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from noisecraft.diffusion.vp import VPSchedule


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Reshape a per-example tensor `[B]` to `[B, 1, ..., 1]` with `ndim` dims so it broadcasts against x."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def batch_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """Return sigma as a `[B]` tensor on x's device, in float32 or wider (float64 if x is float64).

    The coefficients are computed in at least float32 so that a bf16/fp16 `x` does not round sigma**2 + sigma_data**2.
    """
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension (shape [B, ...]); got a 0-d tensor.")
    dtype = torch.promote_types(x.dtype, torch.float32)
    sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device)
    batch_size = x.shape[0]
    if sigma.ndim == 0 or (sigma.ndim == 1 and sigma.shape[0] in (1, batch_size)):
        return sigma.reshape(-1).expand(batch_size)
    raise ValueError(
        f"sigma must be a float, a 0-d tensor or a tensor of shape [{batch_size}] (one per example of x); "
        f"got shape {tuple(sigma.shape)}. Flatten it with sigma.reshape(-1)."
    )


def edm_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor]:
    """c_skip, c_out, c_in of EDM Table 1: unit-variance network input and target for data of std `sigma_data`."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), total.rsqrt()


class Precond(nn.Module):
    """EDM eq. 7 around `net(x_in, c_noise, **cond)`; subclasses only say what the four coefficients are.

    `sigma_min` / `sigma_max` are the noise levels the network was trained on when known (None otherwise).
    The denoiser expects sigma > 0: at sigma = 0 the log-sigma noise embeddings are -inf.
    """

    sigma_min: float | None = None
    sigma_max: float | None = None

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for per-example sigmas `[B]`, each of shape `[B]`."""
        raise NotImplementedError(f"{type(self).__name__} must define scalings(sigma)")

    def forward(self, x: Tensor, sigma: float | Tensor, **cond) -> Tensor | tuple[Tensor, ...]:
        """D(x; sigma) of EDM eq. 7. A net returning a tuple `(F, *aux)` gives `(D, *aux)`, aux passed through as is.

        The auxiliary outputs are whatever the same network call also predicts (e.g. the categorical logits of a
        joint numeric + token model); only F is preconditioned.
        """
        sigma = batch_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in (c_skip, c_out, c_in))
        out = self.net((c_in * x).to(x.dtype), c_noise, **cond)
        F, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, None)
        if not isinstance(F, Tensor) or F.shape != x.shape:
            got = tuple(F.shape) if isinstance(F, Tensor) else type(F).__name__
            raise ValueError(
                f"{type(self.net).__name__} returned {got} for input {tuple(x.shape)}; the raw network must return "
                "a tensor shaped like its input (or a tuple whose first entry is one)."
            )
        D = (c_skip * x + c_out * F.to(c_out.dtype)).to(x.dtype)
        return D if aux is None else (D, *aux)


class EDMPrecond(Precond):
    """EDM preconditioning (Karras et al. 2022, Table 1, "EDM" column); c_noise = ln(sigma) / 4."""

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__(net)
        self.sigma_data = check_number(sigma_data, "sigma_data", positive=True)

    def scalings(self, sigma):
        return (*edm_scalings(sigma, self.sigma_data), sigma.log() / 4)


class VPEpsPrecond(Precond):
    """Epsilon prediction of DDPM (Ho et al. 2020) as a denoiser (EDM Table 1, "VP" column).

    The DDPM input x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps is x / sqrt(1 + sigma^2) with
    alpha_bar = 1 / (1 + sigma^2), so c_in = 1 / sqrt(1 + sigma^2), and x0 = x - sigma * eps gives c_skip = 1,
    c_out = -sigma. c_noise is the continuous timestep the network was trained on, from `vp_schedule.sigma_to_t`.
    """

    def __init__(self, net: nn.Module, vp_schedule: VPSchedule):
        super().__init__(net)
        self.vp_schedule = _check_schedule(vp_schedule)
        self.sigma_min, self.sigma_max = vp_schedule.sigma_min, vp_schedule.sigma_max

    def scalings(self, sigma):
        return torch.ones_like(sigma), -sigma, (1 + sigma**2).rsqrt(), self.vp_schedule.sigma_to_t(sigma)


class VPredPrecond(Precond):
    """v-prediction (Salimans & Ho 2022, "Progressive distillation", section 4: v = alpha_t eps - sigma_t x0).

    For data of std sigma_data the network predicts the v of the unit-scaled data x0 / sigma_data,
    v = (eps - (sigma / sigma_data^2) x0) / sqrt(1 + (sigma / sigma_data)^2); solving for x0 gives the EDM c_skip
    and c_in with c_out negated (EDM's training target F is exactly -v). c_noise is the VP timestep if a
    `vp_schedule` is given (networks trained on DDPM timesteps), else EDM's ln(sigma) / 4.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 1.0, vp_schedule: VPSchedule | None = None):
        super().__init__(net)
        self.sigma_data = check_number(sigma_data, "sigma_data", positive=True)
        self.vp_schedule = None if vp_schedule is None else _check_schedule(vp_schedule)
        if vp_schedule is not None:
            self.sigma_min, self.sigma_max = vp_schedule.sigma_min, vp_schedule.sigma_max

    def scalings(self, sigma):
        c_skip, c_out, c_in = edm_scalings(sigma, self.sigma_data)
        c_noise = sigma.log() / 4 if self.vp_schedule is None else self.vp_schedule.sigma_to_t(sigma)
        return c_skip, -c_out, c_in, c_noise


class ConsistencyPrecond(Precond):
    """A consistency model f(x, sigma) (Song et al. 2023, "Consistency Models", eq. 5 and Appendix C) around the
    network of any other preconditioner `base`, so that a student starts from its teacher's weights.

    The CM paper keeps EDM's c_in and c_noise and shifts the output scalings so that the boundary condition
    f(x, sigma_min) = x holds exactly:

        c_skip_cm(sigma) = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
        c_out_cm(sigma)  = sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2),

    i.e. c_skip_cm(sigma_min) = 1 and c_out_cm(sigma_min) = 0. For any base (EDM, eps, v) we write the network output
    in EDM's F units, F_edm = (D_base - c_skip_edm x) / c_out_edm, and use f = c_skip_cm x + c_out_cm F_edm:
    with b = c_out_cm / c_out_edm = (sigma - sigma_min) / sigma this is EDM eq. 7 with
    c_skip = c_skip_cm + b (c_skip_base - c_skip_edm) and c_out = b c_out_base; for an EDM base it is exactly the
    CM paper's parameterization. c_in and c_noise are the base's. Valid for sigma >= sigma_min.
    """

    def __init__(self, base: Precond, sigma_min: float, sigma_data: float):
        super().__init__(base.net)
        object.__setattr__(self, "_base", base)  # not a sub-module: its net is ours, so each weight is saved once
        self.boundary_sigma = check_number(sigma_min, "sigma_min", positive=True)
        self.sigma_data = check_number(sigma_data, "sigma_data", positive=True)
        self.sigma_min, self.sigma_max = base.sigma_min, base.sigma_max

    def scalings(self, sigma):
        c_skip_base, c_out_base, c_in, c_noise = self._base.scalings(sigma)
        eps, sd = self.boundary_sigma, self.sigma_data
        c_skip_edm, _, _ = edm_scalings(sigma, sd)
        c_skip_cm = sd**2 / ((sigma - eps) ** 2 + sd**2)
        b = (sigma - eps) / sigma
        return c_skip_cm + b * (c_skip_base - c_skip_edm), b * c_out_base, c_in, c_noise


def _check_schedule(vp_schedule) -> VPSchedule:
    if not isinstance(vp_schedule, VPSchedule):
        kind = type(vp_schedule).__name__
        raise TypeError(f"vp_schedule must be a VPSchedule (e.g. VPSchedule.linear()); got {kind}.")
    return vp_schedule


def check_number(value, name: str, *, positive: bool = False) -> float:
    """`value` as a float if it is a finite real number (and > 0 if `positive`), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}.")
    return float(value)
