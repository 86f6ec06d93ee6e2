"""`noisecraft distill MODEL -o STUDENT`: the command-line face of :func:`noisecraft.distill.distill`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def distill_command(
    model: Annotated[Path, typer.Argument(help="The teacher: a trained image model folder (run folder, export or "
                                               "checkpoint), e.g. noisecraft/assets/shapes_t2i.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the student (an ordinary image model "
                                                          "folder: `noisecraft sample/generate --model` it).")],
    method: Annotated[str, typer.Option(help="consistency (Song et al. 2023: one network, 1-4 steps) or "
                                             "progressive (Salimans & Ho 2022: halving rounds).")] = "consistency",
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget in minutes (progressive: shared "
                                                          "equally by its rounds).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps in all (progressive: shared equally by "
                                                      "its rounds). Give --steps and/or --minutes.")] = None,
    student_steps: Annotated[int, typer.Option(help="The student's default sampling steps (progressive: the "
                                                    "last round's steps).")] = 4,
    teacher_steps: Annotated[Optional[int], typer.Option(help="consistency: noise levels N of the "
                                                              "discretisation (default 18); progressive: the "
                                                              "first teacher's steps (default 16 x "
                                                              "--student-steps).")] = None,
    solver: Annotated[str, typer.Option(help="The teacher's ODE step in consistency distillation: heun or "
                                             "euler.")] = "heun",
    batch: Annotated[int, typer.Option("--batch", help="Images per optimizer step.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (AdamW).")] = 2e-4,
    ema_decay: Annotated[Optional[float], typer.Option(help="consistency: target network decay mu (default "
                                                            "0.95); progressive: EMA decay (default 0.99).")] = None,
    guidance_min: Annotated[float, typer.Option(help="Lowest guidance scale the student learns (its knob).")] = 1.0,
    guidance_max: Annotated[Optional[float], typer.Option(help="Highest guidance scale the student learns "
                                                               "(default: the teacher's default + 2; 1 distils "
                                                               "the plain conditional model).")] = None,
    negative_prob: Annotated[float, typer.Option(help="How often the unconditional branch is another example's "
                                                      "condition (keeps negative prompts working).")] = 0.25,
    data: Annotated[Optional[str], typer.Option(help="Images the noisy inputs come from (default: the "
                                                     "teacher's training data).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the distillation (same seed, same student bits).")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the distillation in --out with its stored "
                                                          "settings (give a new --steps/--minutes).")] = False,
) -> None:
    """Distil a trained image model into a 1- to 4-step student that keeps its guidance, negative prompts and
    composition."""
    from noisecraft.distill import distill

    settings = {} if resume else dict(
        student_steps=student_steps, teacher_steps=teacher_steps, solver=solver, batch_size=batch, lr=lr,
        ema_decay=ema_decay, guidance_min=guidance_min, guidance_max=guidance_max, negative_prob=negative_prob,
        data=data, seed=seed)
    path = distill(model, out, method=method, steps=steps, minutes=minutes, resume=resume, device=device,
                   **settings)
    import json

    text = (json.loads((path / "config.json").read_text())["model_config"].get("text_encoder") is not None
            if (path / "config.json").is_file() else False)
    command = f'generate "a red circle" --model {path}' if text else f"sample {path}"
    typer.echo(f"student: {path} (try: noisecraft {command} --steps 2 -o outputs/student)")
