"""The diffusion engine: math only, shared by every modality (see docs/architecture.md).

Continuous data follow x = x0 + sigma * eps (Karras et al. 2022): `precond` turns a raw network into a denoiser
D(x, sigma, **cond), `loss` and `config` train it, `guidance` steers it, `schedules` and `samplers` generate with it,
`vp` holds DDPM tables and `gmm` exact test distributions. Tokens use masked diffusion (`masked`).
Generic schedule names (`linear`, `vp`, `discrete`, ...) stay in `schedules`; reach them with `get_schedule(name)`.
"""

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.gmm import GaussianMixture, random_mixture
from noisecraft.diffusion.guidance import composed_denoiser, drop_condition, guided_denoiser
from noisecraft.diffusion.likelihood import bits_per_dim_from_log_likelihood, dequantize_images, log_likelihood
from noisecraft.diffusion.loss import (
    WEIGHTINGS,
    LogNormalSigma,
    LogUniformSigma,
    VPTimestepSigma,
    denoising_loss,
    get_weighting,
)
from noisecraft.diffusion.masked import MaskSchedule, mask_tokens, masked_diffusion_loss, sample_masked, unmask_step
from noisecraft.diffusion.precond import EDMPrecond, Precond, VPEpsPrecond, VPredPrecond
from noisecraft.diffusion.samplers import (
    SAMPLERS,
    get_sampler,
    nfe,
    sample_ddim,
    sample_ddpm,
    sample_dpm_2,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m_sde,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_lms,
    sample_unipc,
)
from noisecraft.diffusion.sampling_core import default_noise_sampler
from noisecraft.diffusion.schedules import SCHEDULES, get_schedule, karras
from noisecraft.diffusion.vp import VPSchedule

__all__ = [
    "DiffusionConfig",
    "GaussianMixture",
    "random_mixture",
    "composed_denoiser",
    "drop_condition",
    "guided_denoiser",
    "log_likelihood",
    "dequantize_images",
    "bits_per_dim_from_log_likelihood",
    "WEIGHTINGS",
    "LogNormalSigma",
    "LogUniformSigma",
    "VPTimestepSigma",
    "denoising_loss",
    "get_weighting",
    "MaskSchedule",
    "mask_tokens",
    "masked_diffusion_loss",
    "sample_masked",
    "unmask_step",
    "EDMPrecond",
    "Precond",
    "VPEpsPrecond",
    "VPredPrecond",
    "SAMPLERS",
    "get_sampler",
    "nfe",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpm_2",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_lms",
    "sample_unipc",
    "default_noise_sampler",
    "SCHEDULES",
    "get_schedule",
    "karras",
    "VPSchedule",
]
