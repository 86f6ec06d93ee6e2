"""DiffusionConfig: one JSON-able record of how a continuous diffusion model is parameterized, trained and sampled.

It picks the preconditioning (EDM Table 1 column), the training noise distribution p(sigma) and loss weighting
lambda(sigma) (EDM section 5), the sampling sigma range and the condition-dropout rate of classifier-free guidance.
It is saved in a checkpoint's config.json, so `DiffusionConfig.from_dict(json.load(...))` rebuilds the same model.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from noisecraft.diffusion.guidance import drop_condition
from noisecraft.diffusion.loss import (
    WEIGHTINGS,
    LogNormalSigma,
    LogUniformSigma,
    VPTimestepSigma,
    denoising_loss,
    get_weighting,
)
from noisecraft.diffusion.precond import (ConsistencyPrecond, EDMPrecond, Precond, VPEpsPrecond, VPredPrecond,
                                          check_number)
from noisecraft.diffusion.schedules import get_schedule
from noisecraft.diffusion.vp import VPSchedule
from noisecraft.jsonconfig import from_dict

PARAMETERIZATIONS = ("edm", "eps", "v")
TRAIN_SIGMAS = ("lognormal", "vp_timestep", "loguniform")


@dataclass(frozen=True)
class DiffusionConfig:
    """Parameterization + training + sampling defaults. Presets: `edm()`, `ddpm()`, `v_prediction()`.

    parameterization: "edm" (F-prediction, EDMPrecond), "eps" (DDPM epsilon, VPEpsPrecond) or "v" (VPredPrecond).
    sigma_data: data standard deviation used by the "edm" and "v" preconditioners and the "edm" weighting.
    vp_schedule: `VPSchedule.to_dict()` (or a VPSchedule) giving the timesteps of "eps" / "v" networks and of
        "vp_timestep" training; None for continuous ln(sigma)/4 noise conditioning.
    train_sigma: p(sigma) for training: "lognormal" (p_mean, p_std), "vp_timestep" (uniform DDPM index) or
        "loguniform" (over [sigma_min, sigma_max]).
    weighting: lambda(sigma) on the x0-MSE, a key of `loss.WEIGHTINGS` ("min_snr" uses min_snr_gamma).
    sigma_min, sigma_max: the noise range sampled by `sampling_sigmas`.
    cond_drop_prob: probability of replacing an example's condition by the null one in `loss` (CFG training).
    consistency_sigma_min: set for a consistency model (a distilled student, `noisecraft.distill`): the denoiser
        becomes `ConsistencyPrecond` around this parameterization, with f(x, consistency_sigma_min) = x.
    """

    parameterization: str = "edm"
    sigma_data: float = 0.5
    vp_schedule: dict | None = None
    train_sigma: str = "lognormal"
    p_mean: float = -1.2
    p_std: float = 1.2
    weighting: str = "edm"
    min_snr_gamma: float = 5.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    cond_drop_prob: float = 0.0
    consistency_sigma_min: float | None = None

    def __post_init__(self):
        if isinstance(self.vp_schedule, VPSchedule):  # store the JSON form
            object.__setattr__(self, "vp_schedule", self.vp_schedule.to_dict())
        _check_choice(self.parameterization, PARAMETERIZATIONS, "parameterization")
        _check_choice(self.train_sigma, TRAIN_SIGMAS, "train_sigma")
        _check_choice(self.weighting, tuple(WEIGHTINGS), "weighting")
        for name in ("sigma_data", "p_std", "min_snr_gamma", "sigma_min", "sigma_max"):
            check_number(getattr(self, name), name, positive=True)
        check_number(self.p_mean, "p_mean")
        if not 0 <= check_number(self.cond_drop_prob, "cond_drop_prob") < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1); got {self.cond_drop_prob!r}.")
        if self.consistency_sigma_min is not None:
            check_number(self.consistency_sigma_min, "consistency_sigma_min", positive=True)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"need sigma_min < sigma_max; got {self.sigma_min} and {self.sigma_max}.")
        if self.vp_schedule is None:
            for field, value in (("parameterization", "eps"), ("train_sigma", "vp_timestep")):
                if getattr(self, field) == value:
                    raise ValueError(f"{field}={value!r} needs a vp_schedule (e.g. VPSchedule.linear().to_dict()); "
                                     "or start from DiffusionConfig.ddpm().")
        elif not isinstance(self.vp_schedule, dict):
            raise TypeError(f"vp_schedule must be a dict from VPSchedule.to_dict(), a VPSchedule or None; "
                            f"got {type(self.vp_schedule).__name__}.")
        else:
            _ = self.vp  # build (and cache) it now, so a bad dict fails here and not at the first training step

    # --- presets ---

    @classmethod
    def edm(cls, **overrides) -> "DiffusionConfig":
        """Karras et al. 2022, Table 1 "EDM" column: F-prediction, ln(sigma) ~ N(-1.2, 1.2^2), lambda = 1/c_out^2."""
        return cls(**overrides)

    @classmethod
    def ddpm(cls, schedule: str = "linear", **overrides) -> "DiffusionConfig":
        """Ho et al. 2020: epsilon prediction, uniform integer t, plain epsilon-MSE; samples over the table's range.

        `schedule` is "linear" (DDPM) or "cosine" (Nichol & Dhariwal 2021), 1000 steps.
        """
        vp = _vp_preset(schedule)
        preset = dict(parameterization="eps", sigma_data=1.0, vp_schedule=vp.to_dict(), train_sigma="vp_timestep",
                      weighting="eps", sigma_min=vp.sigma_min, sigma_max=vp.sigma_max)
        return cls(**{**preset, **overrides})

    @classmethod
    def v_prediction(cls, schedule: str | None = "cosine", **overrides) -> "DiffusionConfig":
        """Salimans & Ho 2022: v-prediction with the "SNR+1" (v-MSE) weighting, sigma_data = 1.

        With a VP `schedule` ("cosine" or "linear") it trains on uniform DDPM timesteps; with None it is the continuous
        EDM-style variant (log-normal sigma, ln(sigma)/4 conditioning).
        """
        preset: dict = dict(parameterization="v", sigma_data=1.0, weighting="v")
        if schedule is not None:
            vp = _vp_preset(schedule)
            preset.update(vp_schedule=vp.to_dict(), train_sigma="vp_timestep", sigma_min=vp.sigma_min,
                          sigma_max=vp.sigma_max)
        return cls(**{**preset, **overrides})

    # --- building blocks ---

    @functools.cached_property
    def vp(self) -> VPSchedule | None:
        """The VPSchedule described by `vp_schedule`, or None."""
        return None if self.vp_schedule is None else VPSchedule.from_dict(self.vp_schedule)

    def make_denoiser(self, net: nn.Module) -> Precond:
        """Wrap a raw network `net(x_in, c_noise, **cond)` into the denoiser D(x, sigma, **cond) of this config."""
        if self.parameterization == "edm":
            base = EDMPrecond(net, sigma_data=self.sigma_data)
        elif self.parameterization == "eps":
            base = VPEpsPrecond(net, self.vp)
        else:
            base = VPredPrecond(net, sigma_data=self.sigma_data, vp_schedule=self.vp)
        if self.consistency_sigma_min is None:
            return base
        return ConsistencyPrecond(base, self.consistency_sigma_min, self.sigma_data)

    def sigma_sampler(self) -> Callable[..., Tensor]:
        """p(sigma) for training: `sampler(batch_size, generator, device) -> [B]`."""
        if self.train_sigma == "lognormal":
            return LogNormalSigma(self.p_mean, self.p_std)
        if self.train_sigma == "loguniform":
            return LogUniformSigma(self.sigma_min, self.sigma_max)
        return VPTimestepSigma(self.vp)

    def loss_weight(self) -> Callable[[Tensor], Tensor]:
        """lambda(sigma) with this config's sigma_data / min_snr_gamma bound."""
        return get_weighting(self.weighting, sigma_data=self.sigma_data, min_snr_gamma=self.min_snr_gamma)

    def loss(
        self,
        denoiser,
        x0: Tensor,
        generator=None,
        null_cond: dict[str, Tensor] | None = None,
        weight_mask: Tensor | None = None,
        **cond,
    ) -> Tensor:
        """Per-example training loss `[B]`: sigma ~ p(sigma), then `denoising_loss` with this weighting.

        `weight_mask` (broadcastable to x0, e.g. 0 on padding) makes it a weighted mean over elements; see
        `denoising_loss`.

        With cond_drop_prob > 0 and a condition, `null_cond` (one example's "no condition" values, e.g.
        {"class_labels": torch.tensor(num_classes)}) replaces each example's condition with that probability.
        """
        if self.cond_drop_prob > 0 and cond:
            if null_cond is None:
                raise ValueError(f"cond_drop_prob={self.cond_drop_prob} needs null_cond, the 'no condition' value "
                                 f"of each condition key {sorted(cond)}.")
            cond = drop_condition(cond, null_cond, self.cond_drop_prob, generator)
        sigma = self.sigma_sampler()(x0.shape[0], generator, x0.device)
        return denoising_loss(denoiser, x0, sigma, self.loss_weight(), generator=generator,
                              weight_mask=weight_mask, **cond)

    def sampling_sigmas(self, n: int, schedule: str = "karras", **opts) -> Tensor:
        """n + 1 descending sigmas from sigma_max to sigma_min, then 0, from `schedules.get_schedule(schedule)`.

        The "discrete" schedule snaps to this config's VP table unless `vp_schedule` is passed in `opts`.
        """
        if schedule == "discrete" and self.vp is not None:
            opts.setdefault("vp_schedule", self.vp)
        return get_schedule(schedule)(n, self.sigma_min, self.sigma_max, **opts)

    # --- JSON ---

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        return from_dict(cls, d)


def _vp_preset(schedule: str) -> VPSchedule:
    builders = {"linear": VPSchedule.linear, "cosine": VPSchedule.cosine}
    if schedule not in builders:
        raise ValueError(f"unknown VP schedule {schedule!r}; choose one of {sorted(builders)}.")
    return builders[schedule]()


def _check_choice(value, choices: tuple, name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}.")

