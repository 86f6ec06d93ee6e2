"""What both distillation methods share: the teacher, the student built from it, the conditions of a batch and the
guided evaluation of a model at a per-example guidance scale.

A guided teacher is distilled as Ho & Salimans' classifier-free guidance (2022, eq. 6) in denoiser form,

    D_w(x, sigma; c, n) = D(x, sigma; n) + w (D(x, sigma; c) - D(x, sigma; n)),

with random (condition c, negative n, scale w) triples: n is the null condition (no label, the fully masked text) or,
with probability `negative_prob`, another example's condition, so a negative prompt is what the unconditional branch
was trained to be. The student is evaluated in the same guided form, with w also given to its network through a
zero-initialised embedding (LCM, Luo et al. 2023, sec. 4.2: the "guidance knob"): negative prompts and AND/NOT
composition then work for the student exactly as for the teacher (the image pipeline's guidance code), at two network
calls per step when w != 1 and one at w = 1.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from noisecraft.diffusion.loss import draw
from noisecraft.diffusion.precond import append_dims
from noisecraft.images.pipeline import LABEL_DEFAULTS, TEXT_DEFAULTS, ImageDiffusionModel, ImageModelSpec
from noisecraft.training.checkpoint import load_weights, read_config, resolve_model_dir
from noisecraft.training.distributed import unwrap_model


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> ImageDiffusionModel:
    """The teacher's EMA denoiser, frozen in eval mode; a one-line error for a folder that is not an image model."""
    folder = resolve_model_dir(path)
    model_config = read_config(folder).get("model_config") or {}
    kind = model_config.get("kind", "image")
    if kind != "image":
        raise ValueError(f"{path} is a {kind!r} model; `noisecraft distill` distils image models (kind 'image')")
    model = ImageDiffusionModel(ImageModelSpec.from_dict(model_config))
    load_weights(model, folder, use_ema=True)
    return model.to(device).eval().requires_grad_(False)


def is_guided(spec: ImageModelSpec) -> bool:
    """Whether the model takes a condition with a null value (labels or text), i.e. classifier-free guidance."""
    return spec.text_encoder is not None or spec.num_classes > 0


def default_guidance(spec: ImageModelSpec) -> float:
    """The guidance scale the image pipeline samples this kind of model with by default."""
    return (TEXT_DEFAULTS if spec.text_encoder is not None else LABEL_DEFAULTS)["guidance"]


def student_spec(teacher: ImageModelSpec, record: dict[str, Any], *, consistency_sigma_min: float | None
                 ) -> ImageModelSpec:
    """The teacher's spec with a guidance input (guided teachers), the consistency boundary (consistency
    distillation) and the distillation `record` (method, teacher, few-step sampler defaults)."""
    net = dict(teacher.net) | ({"guidance_embedding": True} if is_guided(teacher) else {})
    diffusion = dict(teacher.diffusion) | {"consistency_sigma_min": consistency_sigma_min}
    return replace(teacher, net=net, diffusion=diffusion, distillation=record)


def init_student(spec: ImageModelSpec, teacher: nn.Module) -> ImageDiffusionModel:
    """The student with the teacher's weights; only the new (zero-initialised) guidance embedding is left as built."""
    student = ImageDiffusionModel(spec)
    missing, unexpected = student.load_state_dict(unwrap_model(teacher).state_dict(), strict=False)
    new = [key for key in missing if ".guidance_" not in key]
    if new or unexpected:
        raise ValueError(f"the student does not match its teacher's network (missing {new}, unexpected "
                         f"{unexpected}); distil a model folder written by noisecraft")
    return student


def guided_eval(model, x: Tensor, sigma: Tensor, cond: dict[str, Tensor], neg: dict[str, Tensor], w: Tensor, *,
                takes_guidance: bool, guided: bool) -> Tensor:
    """D(n) + w (D(c) - D(n)) per example (`w` is `[B]`), both branches in one batched call; D(c) alone when the
    teacher has no guidance to distil. `takes_guidance` passes w to the network (a student's knob)."""
    knob = {"guidance": w} if takes_guidance else {}
    if not guided:
        return model(x, sigma, **cond, **knob)
    both = {key: torch.cat([neg[key], cond[key]]) for key in cond}
    knob = {"guidance": w.repeat(2)} if takes_guidance else {}
    d_neg, d_cond = model(torch.cat([x, x]), sigma.repeat(2), **both, **knob).chunk(2)
    return d_neg + append_dims(w, x.ndim).to(x.dtype) * (d_cond - d_neg)


class ConditionSampler:
    """Random (condition, negative, guidance scale) of a training batch, all drawn from the trainer's generator.

    The condition is dropped to the null one with probability `uncond_prob` (so guidance 0 / unconditional
    sampling stays meaningful); the negative is another example's condition with probability `negative_prob`,
    else the null one; w ~ U[guidance_min, guidance_max].
    """

    def __init__(self, spec: ImageModelSpec, *, guidance_min: float, guidance_max: float, negative_prob: float,
                 uncond_prob: float):
        self.spec = spec
        self.guidance_min, self.guidance_max = guidance_min, guidance_max
        self.negative_prob, self.uncond_prob = negative_prob, uncond_prob

    @property
    def guided(self) -> bool:
        return is_guided(self.spec) and self.guidance_max != 1.0

    def __call__(self, batch: dict, models: list[nn.Module], generator: torch.Generator
                 ) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]], Tensor]:
        """Per model (teacher, student: a learned text encoder differs), its `cond` and `neg` dicts; and `w` `[B]`."""
        x0 = batch["image"]
        size, device = x0.shape[0], x0.device
        w = self.guidance_min + (self.guidance_max - self.guidance_min) * draw(torch.rand, size, generator=generator,
                                                                               device=device)
        drop = draw(torch.rand, size, generator=generator, device=device) < self.uncond_prob
        negative = draw(torch.rand, size, generator=generator, device=device) < self.negative_prob
        other = torch.roll(torch.arange(size, device=device), 1)  # "another example": the batch shifted by one
        if self.spec.text_encoder is not None:
            captions = list(batch["caption"])
            conds, negs = [], []
            for model in models:
                model = unwrap_model(model)
                context, mask = model.encode_text(captions)
                null = model.null_text(context.shape[1])
                null_ctx, null_mask = null["context"].expand_as(context), null["context_mask"].expand_as(mask)
                keep, use_neg = append_dims(~drop, 3), append_dims(negative, 3)
                cond = {"context": torch.where(keep, context, null_ctx),
                        "context_mask": torch.where(keep[..., 0], mask, null_mask)}
                neg = {"context": torch.where(use_neg, context[other], null_ctx),
                       "context_mask": torch.where(use_neg[..., 0], mask[other], null_mask)}
                conds.append(cond)
                negs.append(neg)
            return conds, negs, w
        if self.spec.num_classes:
            labels, null = batch["label"].long().to(device), self.spec.num_classes
            cond = {"class_labels": torch.where(drop, torch.full_like(labels, null), labels)}
            neg = {"class_labels": torch.where(negative, labels[other], torch.full_like(labels, null))}
            return [cond] * len(models), [neg] * len(models), w
        return [{}] * len(models), [{}] * len(models), w


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen float32 copy in eval mode (a progressive round's teacher)."""
    return copy.deepcopy(unwrap_model(model)).float().eval().requires_grad_(False)
