"""The ``noisecraft`` command line (typer). Each command is a thin shell over the Python API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="noisecraft: train diffusion models and sample from them.\n\n"
         "Start with `noisecraft demo` (trains a digits model on the CPU in a few minutes and writes pictures).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

# User mistakes surface as these; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError,
               KeyError, FloatingPointError)


def _register_subcommands() -> None:
    if any(group.name == "tabular" for group in app.registered_groups):
        return
    from noisecraft.images.cli_text import register as register_text_to_image

    register_text_to_image(app)  # generate, eval shapes
    try:
        from noisecraft.tabular.cli import app as tabular_app
    except ImportError as error:  # the tabular extra is optional
        tabular_app = typer.Typer(help=f"Synthetic tables (unavailable: {error}; pip install 'noisecraft[tabular]').")
    app.add_typer(tabular_app, name="tabular", help="Synthetic tabular data: fit, sample, evaluate.")


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[str, typer.Option(help="'digits' (built-in, 1,797 labelled 8x8 digits upsampled) or an image "
                                           "folder (PNG/JPEG/WebP, class labels from sub-folder names).")] = "digits",
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log.jsonl, loss.png, "
                                                          "samples/ and the final model.")] = Path("runs/digits"),
    config: Annotated[Optional[Path], typer.Option(help="JSON file with an ImageTrainConfig; command-line options "
                                                         "given explicitly override it.")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="Resize + center-crop images to N x N (required for "
                                                           "folders of mixed sizes).")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 = grey, 3 = RGB (default: 1 for digits, 3 for "
                                                         "folders).")] = None,
    preset: Annotated[str, typer.Option(help="U-Net size: tiny (tests), small (CPU), base (GPU).")] = "small",
    init_from: Annotated[Optional[Path], typer.Option(help="Fine-tune this model (model or run folder, e.g. "
                                                           "noisecraft/assets/shapes_t2i): its network, text encoder "
                                                           "and weights are the starting point.")] = None,
    parameterization: Annotated[str, typer.Option(help="edm (Karras et al. 2022), eps (DDPM noise prediction) or v "
                                                       "(v-prediction).")] = "edm",
    unconditional: Annotated[bool, typer.Option(help="Ignore class labels even if the data has them.")] = False,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 4000,
    batch_size: Annotated[int, typer.Option(help="Images per step and process.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate (after warm-up).")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(help="Linear learning-rate warm-up steps.")] = 200,
    lr_decay: Annotated[str, typer.Option(help="Learning-rate decay after warm-up: none, linear or cosine (to "
                                               "lr x --lr-min-ratio at the last step).")] = "none",
    lr_decay_steps: Annotated[int, typer.Option(help="Decay over the last N steps only (0: all steps after warm-up). "
                                                     "With --resume and a larger --steps this cools down a "
                                                     "constant-rate run.")] = 0,
    lr_min_ratio: Annotated[float, typer.Option(help="Final learning rate as a fraction of --lr.")] = 0.0,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the weights used for sampling.")] = 0.999,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches accumulated per optimizer step.")] = 1,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for the forward pass.")] = False,
    num_workers: Annotated[int, typer.Option(help="Data-loading worker processes (0: load in the training "
                                                  "process).")] = 0,
    cache_on_device: Annotated[bool, typer.Option(help="Read the data set once and keep it on the training device "
                                                       "(it must fit there): no per-step loading.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the network for training: faster "
                                                "steps after a one-off compilation (minutes on a CPU); results "
                                                "differ from an uncompiled run by rounding only.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (with a checkpoint) after this many "
                                                              "minutes.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (0: only at the end).")] = 500,
    sample_every: Annotated[int, typer.Option(help="Steps between sample grids in OUT/samples (0: never).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and noise.")] = 0,
    random_flip: Annotated[bool, typer.Option(help="Random horizontal flips (folders only).")] = False,
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable image files instead of stopping.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's latest checkpoint.")] = False,
) -> None:
    """Train an image diffusion model (single process, or multi-GPU/multi-node under torchrun)."""
    from noisecraft.api import train as train_api

    explicit = {k for k, v in ctx.params.items() if ctx.get_parameter_source(k).name == "COMMANDLINE"}
    explicit |= {"compile"} if "compile_model" in explicit else set()
    settings = _load_json(config) if config else {}
    flat = dict(data=data, out_dir=str(out), resolution=resolution, channels=channels, preset=preset,
                parameterization=parameterization, conditional=not unconditional, random_flip=random_flip,
                skip_bad=skip_bad, init_from=str(init_from) if init_from else None)
    names = {"out_dir": "out", "conditional": "unconditional"}
    for key, value in flat.items():
        if not config or names.get(key, key) in explicit:
            settings[key] = value
    train_settings = dict(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, lr_decay=lr_decay,
                          lr_decay_steps=lr_decay_steps, lr_min_ratio=lr_min_ratio, ema_decay=ema_decay,
                          grad_accum=grad_accum, bf16=bf16, num_workers=num_workers,
                          cache_on_device=cache_on_device, compile=compile_model, max_minutes=max_minutes, seed=seed,
                          checkpoint_every=checkpoint_every, sample_every=sample_every)
    settings["train"] = settings.get("train", {}) | {k: v for k, v in train_settings.items()
                                                      if not config or k in explicit}
    result = train_api(settings, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        typer.echo(f"trained to step {result.step} in {result.wall_time:.0f} s ({result.reason}); model: {out}")


@app.command()
def sample(
    model: Annotated[Path, typer.Argument(help="Model folder: a run folder, its export, or one checkpoint.")],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of images (per label if --label all).")] = 16,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", "-l", help="Class name or index; repeat for several, or 'all' for one row per class. Omit for "
                              "unconditional samples.")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = plain conditional).")] = 1.0,
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 32,
    sampler: Annotated[str, typer.Option(help="euler, heun, ddim, ddpm, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, "
                                              "dpmpp_3m_sde, unipc, ...")] = "heun",
    schedule: Annotated[str, typer.Option(help="Sigma schedule: karras, exponential, polyexponential, vp, linear, "
                                               "discrete, ...")] = "karras",
    seed: Annotated[int, typer.Option(help="Seed; image i uses seed + i, so it does not depend on --n.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for PNGs, JSON sidecars and the "
                                                          "grid.")] = Path("outputs"),
    no_ema: Annotated[bool, typer.Option(help="Use the raw weights instead of the EMA weights.")] = False,
) -> None:
    """Generate images from a trained model; every PNG records its full parameters and seed."""
    from noisecraft.api import load
    from noisecraft.images.cli_text import saved_message

    pipeline = load(model, use_ema=not no_ema)
    names = pipeline.spec.class_names
    labels, row_labels, nrow = label, None, None
    if label == ["all"]:
        if not names:
            raise ValueError("--label all needs a class-conditional model; this one has no classes")
        labels = [name for name in names for _ in range(n)]
        row_labels, nrow = names, n
    elif label:
        labels = label * n if len(label) == 1 else label
    count = len(labels) if labels else n
    images, parameters = pipeline.sample(count, labels=labels, guidance=guidance, steps=steps, sampler=sampler,
                                         schedule=schedule, seed=seed, progress=_progress_bar(steps))
    grid, files = pipeline.save(images, parameters, out, nrow=nrow, row_labels=row_labels)
    typer.echo(saved_message(files, grid, parameters))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for the demo.")] = Path("runs/demo"),
    steps: Annotated[int, typer.Option(help="Training steps (the default takes about 5 minutes on 2 CPU "
                                            "cores; training stops after 8 minutes in any case).")] = 800,
) -> None:
    """Train a class-conditional digits model on the CPU, then write a sample grid (one row per digit)."""
    from noisecraft.demo import run_demo

    run_demo(out, steps=steps)


@app.command()
def info(model: Annotated[Path, typer.Argument(help="Model folder or checkpoint.")]) -> None:
    """Describe a model folder: kind, step, sizes, training settings."""
    from noisecraft.training.checkpoint import read_config, resolve_model_dir

    model_dir = resolve_model_dir(model)
    config = read_config(model_dir)
    model_config = config.get("model_config", {})
    typer.echo(f"model folder: {model_dir}")
    typer.echo(f"kind: {model_config.get('kind')}   step: {config.get('step')}")
    typer.echo(json.dumps({k: v for k, v in config.items() if k != "step"}, indent=2))


def _load_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} line {error.lineno}, column {error.colno}: invalid JSON ({error.msg})") from None


def _progress_bar(steps: int):
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="sampling", unit="step", leave=False)

    def callback(info: dict) -> None:
        bar.update(1)
        if info["i"] == steps - 1:
            bar.close()

    return callback


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line for people, not Python's ``file:line: UserWarning`` form."""
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def main(argv: list[str] | None = None) -> None:
    """Entry point; user errors end with a one-line message and exit status 2, never a traceback."""
    import warnings

    _register_subcommands()
    try:
        with warnings.catch_warnings():  # restores Python's printer when main() returns to a calling program
            warnings.showwarning = _show_warning
            app(args=argv)
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
