"""Text-to-image commands: ``noisecraft generate PROMPT`` and ``noisecraft eval shapes MODEL``.

``register(app)`` adds them to the main typer app (``noisecraft.cli``). Without ``--model``, ``generate`` and
``eval shapes`` use the checkpoint shipped in ``noisecraft/assets/shapes_t2i`` (trained on the shapes world).
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

SHIPPED_MODEL = "assets/shapes_t2i"
DEFAULT_GUIDANCE = 3.0
DEFAULT_STEPS = 12
DEFAULT_SAMPLER = "heun"


def shipped_model() -> Path:
    """The folder of the text-to-image checkpoint that ships with the package."""
    path = Path(str(resources.files("noisecraft") / SHIPPED_MODEL))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the shipped model is missing from {path}; reinstall noisecraft or pass --model")
    return path


def load_text_model(model: Optional[Path], device: str = "cpu"):
    """The text-to-image pipeline of ``model`` (default: the shipped one), with its EMA weights when it has them
    (the shipped folder holds only the EMA weights, as its ``model.safetensors``)."""
    from noisecraft import registry
    from noisecraft.images.pipeline import ImagePipeline
    from noisecraft.training.checkpoint import EMA_FILE

    modality, folder = registry.for_model_dir(model or shipped_model())
    if modality.name != "image":
        raise ValueError(f"{model} is a {modality.name} model, not a text-to-image model; see "
                         f"`noisecraft {modality.name} --help`")
    pipeline = ImagePipeline.load(folder, use_ema=(folder / EMA_FILE).is_file(), device=device)
    if pipeline.spec.text_encoder is None:
        raise ValueError(f"{model} is not a text-to-image model (it has no text encoder); draw from it with "
                         f"`noisecraft sample {model}`")
    return pipeline


def saved_message(files: list, grid: Path, parameters: dict, seconds: float) -> str:
    """The line a sampling command ends with: what it wrote, how long it took, how many network evaluations."""
    return (f"wrote {len(files)} image{'s' * (len(files) != 1)} and {grid} "
            f"({seconds:.1f} s, {parameters['nfe']} NFE)")


def generate(
    prompt: Annotated[str, typer.Argument(help='What to draw, e.g. "a red circle left of a blue square". Compose '
                                               'concepts with AND, weight them with ":1.5", negate with ":-1".')],
    model: Annotated[Optional[Path], typer.Option(help="Text-to-image model folder (default: the shipped shapes "
                                                       "model).")] = None,
    negative: Annotated[Optional[str], typer.Option(help="Negative prompt: replaces the unconditional branch of "
                                                         "classifier-free guidance.")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = plain conditional).")]
    = DEFAULT_GUIDANCE,
    steps: Annotated[Optional[int], typer.Option(help=f"Sampler steps (default {DEFAULT_STEPS}, or a distilled "
                                                      "model's own).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="heun, euler, dpmpp_2m, euler_ancestral, ddim, unipc, "
                                                        "consistency, ... (default heun, or a distilled model's "
                                                        "own).")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="Sigma schedule: karras, exponential, vp, few_step, ... "
                                                         "(default karras, or a distilled model's own).")] = None,
    seed: Annotated[int, typer.Option(help="Seed; image i uses seed + i.")] = 0,
    batch: Annotated[int, typer.Option("--batch", "-n", help="Number of images.")] = 4,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for PNGs (with their parameters) and the "
                                                          "grid.")] = Path("outputs"),
    init_image: Annotated[Optional[Path], typer.Option(help="img2img (SDEdit): start from this image.")] = None,
    strength: Annotated[Optional[float], typer.Option(help="How much of --init-image to redo: 0 keeps it, 1 "
                                                           "ignores it (default 0.6; 1 with --mask).")] = None,
    mask: Annotated[Optional[Path], typer.Option(help="Inpainting mask for --init-image: white = regenerate, "
                                                      "black = keep.")] = None,
    resize: Annotated[bool, typer.Option(help="Scale and centre-crop --init-image/--mask to the model's size "
                                              "instead of refusing other sizes.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Run the network's convolutions in NHWC "
                                                "memory format (~1.2x faster on this project's CPU; pixels within one "
                                                "level of the default's; deterministic).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network: ~1.5x faster sampling, same "
                                          "bits, but the first call compiles for minutes on a CPU.")] = False,
) -> None:
    """Generate images from a text prompt (default model: shapes world, 32x32, runs in seconds on a CPU)."""
    from noisecraft.cli_common import prepare_output_folder, progress_bar
    from noisecraft.text.encoders import validate_prompt

    validate_prompt(prompt)  # before loading anything
    if mask is not None and init_image is None:
        raise ValueError("--mask needs --init-image (the picture to inpaint)")
    if strength is not None and init_image is None:
        raise ValueError("--strength says how much of --init-image to redraw: pass --init-image too")
    from noisecraft.images.speed import speed_up

    pipeline = speed_up(load_text_model(model, device), channels_last=channels_last, compile=compile)
    params = {"n": batch, "prompt": prompt, "negative_prompt": negative, "guidance": guidance, "init_image": init_image,
              "mask": mask, "strength": strength, "resize": resize}
    params |= {key: value for key, value in (("steps", steps), ("sampler", sampler), ("schedule", schedule))
               if value is not None}  # else the model's defaults (a distilled student's few-step sampler)
    out = prepare_output_folder(out)
    bar = progress_bar("sampling")
    generation = pipeline.generate(params, seed=seed, progress=lambda done, total: bar({"total": total}))
    grid, files = pipeline.save(generation.items, generation.parameters, out,
                                row_labels=None)
    typer.echo(saved_message(files, grid, generation.parameters, generation.seconds))


eval_app = typer.Typer(help="Benchmarks of trained models.", no_args_is_help=True)


@eval_app.command("shapes")
def eval_shapes(
    model: Annotated[Optional[Path], typer.Argument(help="Text-to-image model trained on the shapes world "
                                                         "(default: the shipped one).")] = None,
    n_per_prompt: Annotated[int, typer.Option(help="Images per benchmark prompt.")] = 8,
    prompts: Annotated[str, typer.Option(help="Prompt set: 'random' draws --num-prompts new combinations and "
                                              "phrasings from the grammar for --seed (generality); 'fixed' is the "
                                              "list earlier results used.")] = "random",
    num_prompts: Annotated[int, typer.Option(help="Number of random prompts (categories taken in turn).")] = 48,
    categories: Annotated[Optional[str], typer.Option(help="Only these categories, comma-separated (e.g. "
                                                           "'composition').")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = DEFAULT_GUIDANCE,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = DEFAULT_STEPS,
    sampler: Annotated[Optional[str], typer.Option(help="Sampler name (default heun, or a distilled model's "
                                                        "own).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first batch (batch k uses seed + k) and of the random "
                                           "prompts.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images generated per batch.")] = 128,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file for the scores.")] = Path("shapes_eval.json"),
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
) -> None:
    """GenEval-style scores on the shapes world: per-category accuracy, held-out combinations, composition (AND,
    negation), Frechet distance, and why the failed images fail (wrong count, colour/shape, binding, size or
    relation)."""
    from noisecraft.shapes.benchmark import format_table, run_benchmark, save_results, select_prompts
    from noisecraft.shapes.world import ShapesWorldConfig
    from noisecraft.text.prompts import is_composed

    wanted = [c.strip() for c in categories.split(",")] if categories else None
    pipeline = load_text_model(model, device)
    world = ShapesWorldConfig.from_dict({**pipeline.spec.training.get("world", {}),
                                         "resolution": pipeline.spec.resolution})
    prompt_set = select_prompts(prompts, num_prompts, seed, world, wanted)

    def generate_batch(texts: list[str], batch_seed: int) -> torch.Tensor:
        prompt = texts[0] if is_composed(texts[0]) else texts  # a composed prompt's batch repeats one text
        images, _ = pipeline.sample(len(texts), prompt=prompt, guidance=guidance, steps=steps, sampler=sampler,
                                    seed=batch_seed)
        return images

    start = time.perf_counter()
    results = run_benchmark(generate_batch, n_per_prompt=n_per_prompt, seed=seed, batch_size=batch_size,
                            prompts=prompt_set, config=world)
    results["settings"] = {"model": pipeline.source, "prompts": prompts,
                           "num_prompts": len(prompt_set), "categories": wanted, "n_per_prompt": n_per_prompt,
                           "guidance": guidance, "steps": steps,
                           "sampler": sampler or pipeline.sampling_defaults()["sampler"], "seed": seed,
                           "device": str(pipeline.device), "seconds": round(time.perf_counter() - start, 1)}
    typer.echo(format_table(results))
    typer.echo(f"scores written to {save_results(results, out)}")


def register(app: typer.Typer) -> None:
    """Add ``generate`` and the ``eval`` group (``eval shapes``) to ``app``."""
    app.command("generate")(generate)
    app.add_typer(eval_app, name="eval")


if __name__ == "__main__":  # python -m noisecraft.images.cli_text ... (without the rest of the CLI)
    standalone = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    register(standalone)
    standalone()
