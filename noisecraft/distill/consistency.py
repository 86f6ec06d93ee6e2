"""Consistency distillation (Song et al. 2023, "Consistency Models", Algorithm 2) on the shared trainer.

The student f_theta(x, sigma) is a consistency model: `ConsistencyPrecond` around the teacher's network (CM eq. 5 with
the shifted EDM scalings of the paper's Appendix C, so f(x, sigma_min) = x), initialised with the teacher's weights.
On the noise levels of the paper's discretisation (EDM's, eq. 5 of Karras et al. 2022 with N points)

    t_i = (sigma_min^(1/rho) + (i - 1) / (N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,   i = 1..N,

each example draws n ~ U{1, ..., N - 1} and the loss (CM eq. 7, with lambda = 1 and d = mean squared error) is

    d( f_theta(x_{t_{n+1}}, t_{n+1}),  f_theta-(x_hat_{t_n}, t_n) ),    x_{t_{n+1}} = x0 + t_{n+1} z,

where x_hat_{t_n} is one step of the teacher's probability-flow ODE (Heun, EDM Algorithm 1, or Euler) from t_{n+1}
to t_n, and theta- is the target network, theta- <- mu theta- + (1 - mu) theta after every step (CM eq. 8). The
target network is the trainer's EMA copy with decay mu: it is then checkpointed, resumed and exported like any EMA,
and it is what the student samples with (`ema.safetensors`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from noisecraft.diffusion.loss import draw
from noisecraft.diffusion.precond import append_dims
from noisecraft.diffusion.sampling_core import to_d
from noisecraft.distill.student import ConditionSampler, guided_eval

TEACHER_SOLVERS = ("heun", "euler")


def cm_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """The N ascending noise levels t_1 = sigma_min < ... < t_N = sigma_max of the CM discretisation (above)."""
    if n < 2:
        raise ValueError(f"the consistency discretisation needs N >= 2 noise levels; got {n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_min ** (1 / rho) + ramp * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho


@torch.no_grad()
def ode_step(denoiser: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigma: Tensor, sigma_next: Tensor,
             solver: str = "heun") -> Tensor:
    """One step of dx/dsigma = (x - D(x, sigma)) / sigma from per-example `sigma` `[B]` to `sigma_next` `[B]` > 0.

    EDM Algorithm 1 (Heun; Euler without lines 9-11), as the engine's `sample_heun` / `sample_euler` take it, but with
    a noise level per example (the engine samplers share one schedule across the batch; distillation draws a level
    per example). Both sigmas must be > 0.
    """
    s, s_next = append_dims(sigma, x.ndim).to(x.dtype), append_dims(sigma_next, x.ndim).to(x.dtype)
    d = to_d(x, s, denoiser(x, sigma))
    x_euler = x + (s_next - s) * d
    if solver == "euler":
        return x_euler
    d_next = to_d(x_euler, s_next, denoiser(x_euler, sigma_next))
    return x + (s_next - s) * 0.5 * (d + d_next)


def consistency_loss_fn(teacher: nn.Module, conditions: ConditionSampler, target: Callable[[], nn.Module], *,
                        num_levels: int, sigma_min: float, sigma_max: float, solver: str = "heun"
                        ) -> Callable[[nn.Module, dict, torch.Generator], Tensor]:
    """`loss_fn(student, batch, generator) -> [B]` of consistency distillation (module docstring).

    `target()` returns the target network theta- (the trainer's EMA copy, which exists only once training starts).
    """
    if solver not in TEACHER_SOLVERS:
        raise ValueError(f"unknown teacher solver {solver!r}; choose one of {', '.join(TEACHER_SOLVERS)}")
    levels = cm_sigmas(num_levels, sigma_min, sigma_max)
    guided = conditions.guided

    def loss_fn(student: nn.Module, batch: dict, generator: torch.Generator) -> Tensor:
        x0 = batch["image"]
        size, device = x0.shape[0], x0.device
        grid = levels.to(device, torch.float32)
        u = draw(torch.rand, size, generator=generator, device=device)
        n = (u * (num_levels - 1)).long().clamp(max=num_levels - 2)  # n ~ U{0, ..., N - 2}
        t_next, t = grid[n + 1], grid[n]  # t_{n+1} > t_n (1-based in the paper, 0-based here)
        z = draw(torch.randn, x0.shape, generator=generator, device=device, dtype=x0.dtype)
        x = x0 + append_dims(t_next, x0.ndim).to(x0.dtype) * z
        target_net = target()
        (cond_t, cond_s, cond_ema), (neg_t, neg_s, neg_ema), w = conditions(batch, [teacher, student, target_net],
                                                                             generator)

        def teacher_d(x_: Tensor, sigma: Tensor) -> Tensor:
            return guided_eval(teacher, x_, sigma, cond_t, neg_t, w, takes_guidance=False, guided=guided)

        x_hat = ode_step(teacher_d, x, t_next, t, solver)
        with torch.no_grad():
            f_target = guided_eval(target_net, x_hat, t, cond_ema, neg_ema, w, takes_guidance=guided,
                                   guided=guided)
        f_online = guided_eval(student, x, t_next, cond_s, neg_s, w, takes_guidance=guided, guided=guided)
        return (f_online - f_target).float().square().flatten(1).mean(1)

    return loss_fn
