"""Editing with a trained denoiser: SDEdit (img2img) and inpainting, as plain schedule and denoiser wrappers.

Nothing here knows what the data are; every sampler of :mod:`noisecraft.diffusion.samplers` runs them unchanged.

* SDEdit (Meng et al., 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations",
  Sec. 3): perturb a guide x_g to an intermediate noise level, x(t0) = x_g + sigma(t0) z, then solve the reverse
  process from t0 to 0. ``strength`` in [0, 1] picks t0 as a fraction of the sampling schedule: 0 keeps the input,
  1 starts from (almost) pure noise.
* Inpainting by replacement (Song et al., 2021, "Score-Based Generative Modeling through SDEs", Appendix I.2;
  Lugmayr et al., 2022, "RePaint", eq. 8): at every denoiser call the known pixels of x are replaced by the original
  noised to the current sigma, x_known = x0 + sigma * n, so the network sees a sample consistent with the noise
  level everywhere, and the known pixels of its estimate are replaced by x0. A fixed ``noise`` n keeps the known
  region on the path x0 + sigma n of the probability-flow ODE, and the final step to sigma = 0 returns x0 there.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from noisecraft.diffusion.precond import append_dims, batch_sigma

Denoiser = Callable[..., Tensor]


def sdedit_sigmas(sigmas: Tensor, strength: float) -> Tensor:
    """The tail of a descending schedule ``sigmas`` (n + 1 entries ending in 0) that SDEdit runs for ``strength``.

    Keeps the last ``round(strength * n)`` steps: t0 is the ``strength`` fraction of the schedule counted from its
    end. Strength 0 returns ``sigmas[-1:]`` (no step at all, the input is returned unchanged); strength 1 the
    whole schedule.
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1] (0 keeps the input, 1 ignores it); got {strength!r}")
    n = len(sigmas) - 1
    return sigmas[n - round(strength * n):]


def sdedit_start(x0: Tensor, sigma: float | Tensor, noise: Tensor) -> Tensor:
    """SDEdit's starting point x(t0) = x0 + sigma(t0) z (Meng et al., 2022, Algorithm 1, line 1, VE form)."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but the input has {tuple(x0.shape)}")
    return x0 + append_dims(batch_sigma(sigma, x0), x0.ndim).to(x0.dtype) * noise


def inpainting_denoiser(denoiser: Denoiser, known: Tensor, mask: Tensor, noise: Tensor) -> Denoiser:
    """Wrap ``denoiser(x, sigma)`` so that only ``mask`` (1 = regenerate, 0 = keep ``known``) is generated.

    D'(x, sigma) = m * D(m x + (1 - m) (x0 + sigma n), sigma) + (1 - m) x0, with x0 = ``known`` and n = ``noise``
    (shaped like ``known``). ``mask`` broadcasts against x (e.g. ``[B, 1, H, W]`` for images) and may be soft.
    Start the sampler from ``x0 + sigma_max * noise`` where the known region should follow exactly x0 + sigma n.
    """
    if noise.shape != known.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but the known data have {tuple(known.shape)}")
    try:
        torch.broadcast_shapes(mask.shape, known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against the data "
                         f"{tuple(known.shape)}; give one value per pixel") from None
    if mask.min() < 0 or mask.max() > 1:
        raise ValueError("mask values must lie in [0, 1] (1 = regenerate, 0 = keep)")

    def inpaint(x: Tensor, sigma: float | Tensor) -> Tensor:
        m = mask.to(x.dtype)
        sigma_x = append_dims(batch_sigma(sigma, x), x.ndim).to(x.dtype)
        x_known = known + sigma_x * noise  # the original, noised to this step's level
        denoised = denoiser(m * x + (1 - m) * x_known, sigma)
        return m * denoised + (1 - m) * known

    return inpaint
