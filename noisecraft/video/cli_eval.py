"""``noisecraft eval video``: a video model scored on the moving-shapes world (registered through the registry's
``evaluate=`` field; the checks are :mod:`noisecraft.video.evaluate`, FD-MSC is :mod:`noisecraft.video.classifier`)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

SHIPPED_VIDEO_MODEL = "assets/video_shapes"


def default_model() -> Path:
    path = Path(str(resources.files("noisecraft") / SHIPPED_VIDEO_MODEL))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the shipped video model is missing from {path}; reinstall noisecraft or pass "
                                f"--model")
    return path


def save_record(record: dict, path: Path) -> Path:
    """Indented JSON, NaN-free (missing figures are null), written atomically."""
    from noisecraft.training.checkpoint import atomic_write_bytes

    clean = json.loads(json.dumps(record, default=float), parse_constant=lambda _: None)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(clean, indent=2) + "\n").encode("utf-8"))
    return path


def evaluate_command(
    model: Annotated[Optional[Path], typer.Option("--model", help="Video model folder (default: the shipped "
                                                                  "moving-shapes model).")] = None,
    per_prompt: Annotated[int, typer.Option(help="Clips per prompt.")] = 2,
    prompts: Annotated[int, typer.Option(help="Random prompts drawn from the world's grammar for --seed (the "
                                              "categories in turn: single motion, two objects, growth, still, "
                                              "held out).")] = 24,
    frames: Annotated[Optional[int], typer.Option(help="Frames per clip (default: the model's).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps (default: the model's).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Guidance scale (default: the model's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the prompts; prompt k's clips use seed + k.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file for the record.")] = Path("video_eval.json"),
) -> None:
    """Clips fully right (the prompted objects in every frame and the prompted motion, monotone), per category,
    seen and held out, with failure reasons; identity kept across frames; flicker; and FD-MSC (the Frechet
    distance in a small moving-shapes classifier's features; not FVD)."""
    import noisecraft
    from noisecraft.video.evaluate import evaluate_model, format_table

    if prompts < 1:
        raise ValueError(f"--prompts must be at least 1, got {prompts}")
    if per_prompt < 1:
        raise ValueError(f"--per-prompt must be at least 1, got {per_prompt}")
    if frames is not None and frames < 2:
        raise ValueError(f"--frames must be at least 2 (motion needs two frames), got {frames}")
    folder = model or default_model()
    pipeline = noisecraft.load(folder, device=device)
    record = evaluate_model(pipeline, folder, prompts=prompts, per_prompt=per_prompt, frames=frames, steps=steps,
                            guidance=guidance, seed=seed, log=typer.echo)
    record["settings"]["device"] = device
    typer.echo(format_table(record))
    typer.echo(f"record written to {save_record(record, out)}")
