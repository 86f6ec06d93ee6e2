"""`distill(teacher, out_dir, ...)`: a trained image model -> a few-step student, an ordinary image model folder.

Consistency distillation is one run of the shared trainer in `out_dir`; progressive distillation is one run per
halving round in `out_dir/rounds/<k>_steps/` (each a loadable student with k steps), the last copied to the top of
`out_dir`. The settings are written to `out_dir/distill.json` first, so `resume=True` continues with the same ones
(only `steps` / `minutes` may change); the trainer's checkpoints carry weights, EMA, optimizer and random streams.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from noisecraft.device import resolve_device
from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.distill.consistency import TEACHER_SOLVERS, consistency_loss_fn
from noisecraft.distill.progressive import progressive_loss_fn, round_plan
from noisecraft.distill.student import (ConditionSampler, default_guidance, frozen_copy, init_student, is_guided,
                                        load_teacher, student_spec)
from noisecraft.images.pipeline import ImageDiffusionModel
from noisecraft.images.training import ImageTrainConfig, build_dataset
from noisecraft.jsonconfig import from_dict
from noisecraft.training.checkpoint import atomic_write_bytes, latest_checkpoint, load_weights, resolve_model_dir
from noisecraft.training.trainer import TrainConfig, Trainer

METHODS = ("consistency", "progressive")
SETTINGS_FILE = "distill.json"
ROUNDS_FILE = "rounds.json"


@dataclass
class DistillConfig:
    """The settings of a distillation (stored as `distill.json` and in the student's `model_config.distillation`).

    student_steps: the student's default sampling steps (consistency: any 1..4 work; progressive: the last round's).
    teacher_steps: consistency: N, the noise levels of the discretisation (CM paper: 18); progressive: the steps of
        the first round's teacher (student_steps times a power of two; default 16 x student_steps, four rounds).
    solver: the teacher's ODE step in consistency distillation ("heun", EDM Algorithm 1, or "euler").
    ema_decay: consistency: mu of the target network theta- (CM eq. 8); progressive: the EMA of each round.
    guidance_min / guidance_max: the range of guidance scales w the student learns (its knob); None = [1, teacher
        default + 2] for guided teachers; equal to 1 distils the plain conditional model (one call per step).
    negative_prob: how often the unconditional branch is another example's condition (a negative prompt).
    uncond_prob: how often the condition itself is dropped (unconditional sampling stays available).
    data: the images the noisy inputs are made from; None = the teacher's training data.
    """

    teacher: str
    method: str = "consistency"
    student_steps: int = 4
    teacher_steps: int | None = None
    solver: str = "heun"
    batch_size: int = 32
    lr: float = 2e-4
    ema_decay: float | None = None
    guidance_min: float = 1.0
    guidance_max: float | None = None
    negative_prob: float = 0.25
    uncond_prob: float = 0.1
    data: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown distillation method {self.method!r}; choose consistency or progressive")
        if self.solver not in TEACHER_SOLVERS:
            raise ValueError(f"unknown --solver {self.solver!r}; choose {' or '.join(TEACHER_SOLVERS)}")
        for name in ("student_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1; got {value!r}")
        if self.method == "consistency" and self.student_steps > 8:
            raise ValueError(f"--student-steps {self.student_steps} is not few-step: a consistency student samples "
                             "with 1 to 8 steps (4 or fewer is usual)")
        if self.teacher_steps is None:
            self.teacher_steps = 18 if self.method == "consistency" else 16 * self.student_steps
        if self.method == "progressive":
            round_plan(self.teacher_steps, self.student_steps)
        elif self.teacher_steps < 2:
            raise ValueError(f"--teacher-steps must be >= 2 noise levels; got {self.teacher_steps}")
        if self.ema_decay is None:
            self.ema_decay = 0.95 if self.method == "consistency" else 0.99
        if not (self.lr > 0 and 0 <= self.ema_decay < 1 and 0 <= self.negative_prob <= 1
                and 0 <= self.uncond_prob < 1 and self.guidance_min >= 0):
            raise ValueError("need lr > 0, 0 <= ema_decay < 1, negative_prob in [0, 1], uncond_prob in [0, 1) and "
                             "guidance_min >= 0")
        if self.guidance_max is not None and self.guidance_max < self.guidance_min:
            raise ValueError(f"--guidance-max ({self.guidance_max}) is below --guidance-min ({self.guidance_min})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        return from_dict(cls, data, name="distillation config")


def distill(teacher: str | Path, out_dir: str | Path, *, method: str = "consistency", steps: int | None = None,
            minutes: float | None = None, resume: bool = False, device: str = "cpu", progress: bool = True,
            **settings: Any) -> Path:
    """Distil the image model `teacher` into a few-step student in `out_dir`; returns `out_dir`.

    Give a budget: `steps` (optimizer steps in all) and/or `minutes` (wall clock). `settings` are the other fields of
    :class:`DistillConfig` (student_steps, batch_size, lr, guidance_max, ...). The student loads with
    `noisecraft.load(out_dir)` and samples with its own few-step sampler by default.
    """
    if steps is None and minutes is None:
        raise ValueError("give a budget: --steps N (optimizer steps) or --minutes M")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"--steps must be an integer >= 1; got {steps!r}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"--minutes must be > 0; got {minutes!r}")
    out_dir = Path(out_dir)
    settings_path = out_dir / SETTINGS_FILE
    if resume:
        if not settings_path.is_file():
            raise FileNotFoundError(f"cannot resume: {out_dir} holds no {SETTINGS_FILE}; start without --resume")
        if settings:
            raise ValueError(f"a resumed distillation keeps its stored settings ({out_dir / SETTINGS_FILE}); give "
                             f"only the budget (steps / minutes), not {', '.join(sorted(settings))}")
        config = DistillConfig.from_dict(json.loads(settings_path.read_text()))
    else:
        if settings_path.exists() or latest_checkpoint(out_dir) is not None:
            raise FileExistsError(f"{out_dir} already holds a distillation: continue it with --resume or choose a "
                                  "new -o")
        config = DistillConfig(teacher=str(resolve_model_dir(teacher)), method=method, **settings)
    device = resolve_device(device)
    teacher_model = load_teacher(config.teacher, device)  # checks the kind before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_bytes(settings_path, json.dumps(config.to_dict(), indent=2).encode())
    spec = teacher_model.spec
    guidance_max = config.guidance_max if config.guidance_max is not None else \
        (default_guidance(spec) + 2.0 if is_guided(spec) else 1.0)
    conditions = ConditionSampler(spec, guidance_min=config.guidance_min, guidance_max=guidance_max,
                                  negative_prob=config.negative_prob, uncond_prob=config.uncond_prob)
    dataset = _dataset(config, spec)
    budget = {"steps": steps, "minutes": minutes}
    run = _consistency if config.method == "consistency" else _progressive
    run(config, teacher_model, conditions, dataset, out_dir, budget, resume=resume, device=device, progress=progress)
    return out_dir


def _record(config: DistillConfig, conditions: ConditionSampler, *, sampler: str, steps: int, **extra) -> dict:
    """The student's `distillation` record: provenance, and the sampling defaults the image pipeline reads."""
    low, high = conditions.guidance_min, conditions.guidance_max
    guidance = min(max(default_guidance(conditions.spec), low), high) if is_guided(conditions.spec) else 1.0
    return {"method": config.method, "teacher": config.teacher, "sampler": sampler, "schedule": "few_step",
            "steps": steps, "guidance": guidance, "guidance_range": [low, high], **extra,
            "settings": config.to_dict()}


def _train_config(config: DistillConfig, budget: dict, *, steps_share: int = 1) -> TrainConfig:
    steps = budget["steps"]
    minutes = budget["minutes"]
    return TrainConfig(steps=max(1, steps // steps_share) if steps else 10**9, batch_size=config.batch_size,
                       lr=config.lr, warmup_steps=0, ema_decay=config.ema_decay, seed=config.seed, log_every=10,
                       checkpoint_every=200, sample_every=0,
                       max_minutes=None if minutes is None else minutes / steps_share)


def _consistency(config, teacher, conditions, dataset, out_dir, budget, *, resume, device, progress) -> None:
    diffusion = teacher.diffusion
    sigma_min = diffusion.sigma_min
    record = _record(config, conditions, sampler="consistency", steps=config.student_steps, sigma_min=sigma_min,
                     teacher_solver=config.solver, levels=config.teacher_steps)
    spec = student_spec(teacher.spec, record, consistency_sigma_min=sigma_min)
    torch.manual_seed(config.seed)
    student = init_student(spec, teacher)
    trainer_ref: list[Trainer] = []
    loss_fn = consistency_loss_fn(teacher, conditions, lambda: trainer_ref[0].ema, num_levels=config.teacher_steps,
                                  sigma_min=sigma_min, sigma_max=diffusion.sigma_max, solver=config.solver)
    trainer = Trainer(student, loss_fn, dataset, _train_config(config, budget), out_dir,
                      model_config=spec.to_dict(), progress=progress, device=device)
    trainer_ref.append(trainer)  # the target network theta- is the trainer's EMA copy
    trainer.fit(resume=resume)


def _progressive(config, teacher, conditions, dataset, out_dir, budget, *, resume, device, progress) -> None:
    plan = round_plan(config.teacher_steps, config.student_steps)
    done_path = out_dir / ROUNDS_FILE
    done = json.loads(done_path.read_text()) if resume and done_path.is_file() else []
    round_teacher, teacher_takes_guidance = teacher, False
    guided = conditions.guided
    for index, steps in enumerate(plan):
        round_dir = out_dir / "rounds" / f"{steps}_steps"
        record = _record(config, conditions, sampler="euler", steps=steps, round=index + 1, rounds=len(plan))
        spec = student_spec(teacher.spec, record, consistency_sigma_min=None)
        if index < len(done):  # finished before this resume: it is the next round's teacher
            round_teacher = _load_student(spec, round_dir, device)
            teacher_takes_guidance = guided
            continue
        torch.manual_seed(config.seed)
        student = init_student(spec, teacher) if index == 0 else _copy_into(spec, round_teacher)
        loss_fn = progressive_loss_fn(round_teacher, conditions, DiffusionConfig.from_dict(spec.diffusion),
                                      student_steps=steps, teacher_takes_guidance=teacher_takes_guidance)
        trainer = Trainer(student, loss_fn, dataset, _train_config(config, budget, steps_share=len(plan)), round_dir,
                          model_config=spec.to_dict(), progress=progress, device=device)
        result = trainer.fit(resume=resume and latest_checkpoint(round_dir) is not None)
        if result.interrupted:
            return  # the round continues with --resume
        done.append({"round": index + 1, "student_steps": steps, "optimizer_steps": result.step,
                     "reason": result.reason})
        atomic_write_bytes(done_path, json.dumps(done, indent=2).encode())
        round_teacher, teacher_takes_guidance = frozen_copy(trainer.ema), guided
    final = out_dir / "rounds" / f"{plan[-1]}_steps"
    for name in ("model.safetensors", "ema.safetensors", "config.json"):  # config last: the folder is complete
        atomic_write_bytes(out_dir / name, (final / name).read_bytes())


def _load_student(spec, folder: Path, device) -> torch.nn.Module:
    model = ImageDiffusionModel(spec)
    load_weights(model, folder, use_ema=True, strict=True)
    return model.to(device).eval().requires_grad_(False)


def _copy_into(spec, previous: torch.nn.Module) -> ImageDiffusionModel:
    """A new round's student: the previous round's student (its EMA weights), with this round's record."""
    model = ImageDiffusionModel(spec)
    model.load_state_dict(previous.state_dict())
    return model


def _dataset(config: DistillConfig, spec):
    """The noisy inputs' clean images: `config.data`, else the data the teacher was trained on."""
    training = dict(spec.training or {})
    settings = {key: training[key] for key in ("data", "resolution", "channels", "world", "num_examples")
                if key in training}
    if config.data is not None:
        settings = {"data": config.data, "resolution": spec.shape[1], "channels": spec.channels}
    if "data" not in settings:
        raise ValueError(f"{config.teacher} does not record its training data: pass --data (e.g. digits, shapes or "
                         "an image folder)")
    if settings.get("resolution") is None:
        settings["resolution"] = spec.shape[1]
    data_config = replace(ImageTrainConfig.from_dict(settings),
                          conditional=spec.num_classes > 0 or spec.text_encoder is not None)
    return build_dataset(data_config)
