"""``noisecraft points generate | train | eval``: thin commands over ``noisecraft.points``.

User mistakes (a bad option value, a missing or unreadable mesh, an unknown model) are raised as ValueError /
FileNotFoundError with a one-line message naming the option or file; the main CLI prints them as one ``error:`` line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft.cli_common import step_progress_bar

app = typer.Typer(help="3D assets as point clouds: generate shapes from prompts (PLY, alpha-shape meshes, views, "
                       "turntables), train on the procedural world or your meshes, evaluate (MMD / COV / 1-NNA, "
                       "prompt correctness).", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "points_shapes"


def _model(model: Optional[Path]) -> Path:
    path = model or DEFAULT_MODEL
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model folder" + ("" if model else
                                " (the shipped points model is missing; pass --model)"))
    return path


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help='What to make, e.g. "a tall cylinder", "a thin torus".')],
    points: Annotated[Optional[int], typer.Option("--points", help="Points per cloud (default: the model's "
                                                                   "training size).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Sampler steps.")] = 16,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 2.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of cloud 0 (cloud i uses seed + i).")] = 0,
    batch: Annotated[int, typer.Option("--batch", help="Number of clouds.")] = 4,
    sampler: Annotated[str, typer.Option("--sampler", help="Sampler (k-diffusion names).")] = "heun",
    mesh: Annotated[bool, typer.Option("--mesh", help="Also reconstruct a mesh per cloud (alpha shape).")] = False,
    mesh_format: Annotated[str, typer.Option("--mesh-format", help="Mesh file format: glb or obj.")] = "glb",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("outputs/points"),
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder (default: the shipped world "
                                                                  "model).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Generate point clouds of PROMPT and write PLY files, views.png, turntable.gif (and meshes) to OUT."""
    import noisecraft

    pipeline = noisecraft.load(_model(model), device=device)
    params = {"prompt": prompt, "steps": steps, "guidance": guidance, "n": batch, "sampler": sampler, "mesh": mesh,
              "mesh_format": mesh_format}
    if points is not None:
        params["points"] = points
    generation = pipeline.generate(params, seed=seed, progress=step_progress_bar("sampling"))
    files = pipeline.save_outputs(generation, out)
    for note in generation.notes:
        typer.echo(note)
    typer.echo(f"wrote {len(files)} files to {out} ({generation.seconds:.1f} s)")


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="'world' (the procedural primitives) or a folder of meshes "
                                             "(OBJ/STL/PLY/GLB; sub-folders = labels, or metadata.jsonl "
                                             "captions).")] = "world",
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create (or continue with "
                                                          "--resume).")] = ...,
    points: Annotated[int, typer.Option(help="Points per training cloud.")] = 512,
    preset: Annotated[str, typer.Option(help="Network size: tiny, small or base.")] = "small",
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="minilm (frozen, default with "
                                                        "captions), learned, or none (class labels).")] = None,
    normals: Annotated[bool, typer.Option(help="Also learn unit normals (6 channels).")] = False,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget in minutes.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 20000 unless --minutes).")] = None,
    batch_size: Annotated[int, typer.Option(help="Clouds per optimizer step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data and noise.")] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave out unreadable, empty or zero-area meshes "
                                                              "(listed) instead of stopping.")] = False,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of further options (net, world, diffusion, "
                                                        "train, ...); the command-line options win.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its latest checkpoint.")] = False,
) -> None:
    """Train a points diffusion model on DATA and save it to OUT."""
    from noisecraft.points.training import train_points

    options = json.loads(Path(config).read_text()) if config is not None else {}
    options |= {"data": data, "out_dir": str(out), "points": points, "preset": preset, "normals": normals,
                "minutes": minutes, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                "skip_bad": skip_bad}
    if text_encoder is not None:
        options["text_encoder"] = text_encoder
    result = train_points(options, resume=resume)
    typer.echo(f"trained {result.step} steps; model in {out}")


@app.command("eval")
def eval_(
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder (default: the shipped one).")] = None,
    per_prompt: Annotated[int, typer.Option(help="Clouds per prompt.")] = 4,
    points: Annotated[Optional[int], typer.Option(help="Points per cloud (default: the model's).")] = None,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 16,
    guidance: Annotated[float, typer.Option(help="Guidance scale.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    emd: Annotated[bool, typer.Option("--emd/--no-emd", help="Also the EMD metrics (exact assignment; "
                                                              "slow).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON record here.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Prompt correctness (seen / held out) and 1-NNA, MMD, COV against the world (PointFlow protocol)."""
    import noisecraft
    from noisecraft.points.evaluate import evaluate_model

    pipeline = noisecraft.load(_model(model), device=device)
    record = evaluate_model(pipeline, per_prompt=per_prompt, points=points, steps=steps, guidance=guidance,
                            seed=seed, metrics=("cd", "emd") if emd else ("cd",), log=typer.echo)
    text = json.dumps(record, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    pf = record["pointflow"]
    scenes = f", scenes {record['correct_scenes']}" if record.get("correct_scenes") is not None else ""
    typer.echo(f"correct: seen {record['correct_seen']}, held out {record['correct_held_out']}{scenes}; "
               + ", ".join(f"{k} {v:.4f}" for k, v in pf.items() if k.startswith(("1-NNA", "MMD", "COV"))))
