"""Progressive distillation (Salimans & Ho 2022, Algorithm 2) in sigma form, on the shared trainer.

Each round halves the number of sampling steps: a student with K steps learns to do in one DDIM step what its teacher
does in two. On the nested grid of `schedules.few_step` (level i of K steps is level 2i of 2K), with
sigma = s_{2i}, sigma' = s_{2i+1}, sigma'' = s_{2i+2} of the teacher's 2K-step grid and i ~ U{0, ..., K - 1}:

    x = x0 + sigma z,
    x'  = D_T(x, sigma)   + (sigma' / sigma)   (x  - D_T(x, sigma)),       two deterministic DDIM (= Euler) steps
    x'' = D_T(x', sigma') + (sigma'' / sigma') (x' - D_T(x', sigma')),     of the (guided) teacher,

and the student's target is the x0 whose single DDIM step from sigma lands on x'' (the paper's x~, Algorithm 2):

    x~ = (x'' - (sigma'' / sigma) x) / (1 - sigma'' / sigma),

trained with the teacher's own x0-loss weighting lambda(sigma) (`DiffusionConfig.loss_weight`, e.g. EDM's
1 / c_out^2, close to the paper's "truncated SNR" max(SNR, 1)): loss = lambda(sigma) ||D_S(x, sigma) - x~||^2.
Round r's student starts from, and becomes, round r + 1's teacher. The student samples with DDIM (`euler`) on
the `few_step` schedule.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.loss import draw
from noisecraft.diffusion.precond import append_dims
from noisecraft.diffusion.schedules import few_step
from noisecraft.distill.student import ConditionSampler, guided_eval


def round_plan(start_steps: int, student_steps: int) -> list[int]:
    """The student steps of each round, halving from `start_steps` (the first teacher's steps) to `student_steps`."""
    rounds = math.log2(start_steps / student_steps) if start_steps > student_steps > 0 else 0.0
    if rounds < 1 or rounds != int(rounds):
        raise ValueError(f"progressive distillation halves the steps each round: --teacher-steps ({start_steps}) "
                         f"must be --student-steps ({student_steps}) times a power of two >= 2, e.g. "
                         f"{16 * max(student_steps, 1)}")
    return [start_steps >> r for r in range(1, int(rounds) + 1)]


def ddim_step(x: Tensor, denoised: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """Deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0) in sigma form, per example: D + (s'/s)(x - D)."""
    ratio = append_dims(sigma_next / sigma, x.ndim).to(x.dtype)
    return denoised + ratio * (x - denoised)


def progressive_loss_fn(teacher: nn.Module, conditions: ConditionSampler, diffusion: DiffusionConfig, *,
                        student_steps: int, teacher_takes_guidance: bool
                        ) -> Callable[[nn.Module, dict, torch.Generator], Tensor]:
    """`loss_fn(student, batch, generator) -> [B]` of one round with a `student_steps`-step student (module doc)."""
    grid = few_step(2 * student_steps, diffusion.sigma_min, diffusion.sigma_max)
    weight = diffusion.loss_weight()
    guided = conditions.guided

    def loss_fn(student: nn.Module, batch: dict, generator: torch.Generator) -> Tensor:
        x0 = batch["image"]
        size, device = x0.shape[0], x0.device
        levels = grid.to(device, torch.float32)
        u = draw(torch.rand, size, generator=generator, device=device)
        i = (u * student_steps).long().clamp(max=student_steps - 1)
        sigma, sigma_mid, sigma_end = levels[2 * i], levels[2 * i + 1], levels[2 * i + 2]
        z = draw(torch.randn, x0.shape, generator=generator, device=device, dtype=x0.dtype)
        x = x0 + append_dims(sigma, x0.ndim).to(x0.dtype) * z
        (cond_t, cond_s), (neg_t, neg_s), w = conditions(batch, [teacher, student], generator)
        with torch.no_grad():
            def teacher_d(x_: Tensor, sigma_: Tensor) -> Tensor:
                return guided_eval(teacher, x_, sigma_, cond_t, neg_t, w, takes_guidance=teacher_takes_guidance,
                                   guided=guided)

            x_mid = ddim_step(x, teacher_d(x, sigma), sigma, sigma_mid)
            x_end = ddim_step(x_mid, teacher_d(x_mid, sigma_mid), sigma_mid, sigma_end)
            ratio = append_dims(sigma_end / sigma, x.ndim).to(x.dtype)
            target = (x_end - ratio * x) / (1 - ratio)
        denoised = guided_eval(student, x, sigma, cond_s, neg_s, w, takes_guidance=guided, guided=guided)
        return weight(sigma) * (denoised - target).float().square().flatten(1).mean(1)

    return loss_fn
