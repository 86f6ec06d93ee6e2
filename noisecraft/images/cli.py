"""``noisecraft image train | sample | generate | eval``: the image modality's commands.

The same commands stay at the root (``noisecraft train``, ``noisecraft sample``, ...) as aliases, so the README's
commands keep working. Each command is a thin shell over the Python API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft.cli_common import load_json, prepare_output_folder, progress_bar
from noisecraft.images.cli_text import register as register_text_commands

app = typer.Typer(help="Images: train class-conditional, unconditional or text-to-image models; sample, generate "
                       "from prompts, benchmark.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)


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
    unconditional: Annotated[bool, typer.Option(help="Ignore class labels and captions even if the data has "
                                                     "them.")] = False,
    text_encoder: Annotated[Optional[str], typer.Option(help="Text encoder for captioned data (metadata.jsonl or "
                                                             ".txt files): minilm (frozen; the default when the data "
                                                             "has captions), learned (small, trained with the "
                                                             "model) or none (ignore the captions).")] = None,
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
    resume: Annotated[bool, typer.Option(help="Continue OUT's run from its latest checkpoint with the run's own "
                                              "settings; give only what changes (e.g. a larger --steps).")] = False,
) -> None:
    """Train an image diffusion model (single process, or multi-GPU/multi-node under torchrun)."""
    from noisecraft.images.training import train_images

    explicit = {k for k, v in ctx.params.items() if ctx.get_parameter_source(k).name == "COMMANDLINE"}
    explicit |= {"compile"} if "compile_model" in explicit else set()
    # A new run takes every option, defaults included; a config file or a resumed run brings its own settings,
    # which only the options typed here override.
    every_option = not config and not resume
    settings = load_json(config) if config else {}
    flat = dict(data=data, out_dir=str(out), resolution=resolution, channels=channels, preset=preset,
                parameterization=parameterization, conditional=not unconditional, random_flip=random_flip,
                skip_bad=skip_bad, init_from=str(init_from) if init_from else None,
                text_encoder=_text_encoder_setting(text_encoder, settings.get("text_encoder")))
    names = {"out_dir": "out", "conditional": "unconditional"}
    for key, value in flat.items():
        if every_option or names.get(key, key) in explicit:
            settings[key] = value
    train_settings = dict(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, lr_decay=lr_decay,
                          lr_decay_steps=lr_decay_steps, lr_min_ratio=lr_min_ratio, ema_decay=ema_decay,
                          grad_accum=grad_accum, bf16=bf16, num_workers=num_workers,
                          cache_on_device=cache_on_device, compile=compile_model, max_minutes=max_minutes, seed=seed,
                          checkpoint_every=checkpoint_every, sample_every=sample_every)
    settings["train"] = settings.get("train", {}) | {k: v for k, v in train_settings.items()
                                                      if every_option or k in explicit}
    result = train_images(settings, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        typer.echo(f"trained to step {result.step} in {result.wall_time:.0f} s ({result.reason}); model: {out}")


def _text_encoder_setting(name: str | None, configured: dict | None) -> dict | None:
    """``--text-encoder NAME`` as a config value; a config file's settings of that same encoder (dim, layers, ...)
    are kept rather than replaced by its defaults."""
    if name is None:
        return None
    if isinstance(configured, dict) and configured.get("name") == name:
        return configured
    return {"name": name}


@app.command()
def sample(
    model: Annotated[Path, typer.Argument(help="Model folder: a run folder, its export, or one checkpoint.")],
    n: Annotated[int, typer.Option("-n", "--num-images", help="Number of images (per label if --label all).")] = 16,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", "-l", help="Class name or index; repeat for several, or 'all' for one row per class. Omit for "
                              "unconditional samples.")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = plain conditional).")] = 1.0,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps (default 32, or a distilled model's "
                                                      "own).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="euler, heun, ddim, ddpm, euler_ancestral, dpmpp_2m, "
                                                        "dpmpp_2m_sde, dpmpp_3m_sde, unipc, consistency, ... "
                                                        "(default heun, or a distilled model's own).")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="Sigma schedule: karras, exponential, polyexponential, "
                                                         "vp, linear, discrete, few_step, ... (default karras, or a "
                                                         "distilled model's own).")] = None,
    seed: Annotated[int, typer.Option(help="Seed; image i uses seed + i, so it does not depend on --n.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for PNGs, JSON sidecars and the "
                                                          "grid.")] = Path("outputs"),
    ema: Annotated[bool, typer.Option("--ema/--raw-weights", help="Sample with the EMA weights (default) or the "
                                                                  "raw trained weights.")] = True,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Run the network's convolutions in NHWC "
                                                "memory format (~1.2x faster on this project's CPU; pixels within one "
                                                "level of the default's; deterministic).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network: ~1.5x faster sampling, same "
                                          "bits, but the first call compiles for minutes on a CPU.")] = False,
) -> None:
    """Generate images from a trained model; every PNG records its full parameters and seed."""
    from noisecraft.images.cli_text import saved_message
    from noisecraft.images.pipeline import ImagePipeline

    from noisecraft.images.speed import speed_up

    pipeline = speed_up(ImagePipeline.load(model, use_ema=ema, device=device), channels_last=channels_last,
                        compile=compile)
    if pipeline.spec.text_encoder is not None:
        raise ValueError(f"{model} is a text-to-image model: draw with `noisecraft generate PROMPT --model {model}`")
    chosen = {key: value for key, value in (("steps", steps), ("sampler", sampler), ("schedule", schedule))
              if value is not None}
    pipeline.check_params({"n": n, **chosen} | ({"guidance": guidance} if pipeline.spec.class_names else {}))
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
    out = prepare_output_folder(out)
    start = time.perf_counter()
    images, parameters = pipeline.sample(count, labels=labels, guidance=guidance, steps=steps, sampler=sampler,
                                         schedule=schedule, seed=seed, progress=progress_bar("sampling"))
    seconds = time.perf_counter() - start
    grid, files = pipeline.save(images, parameters, out, nrow=nrow, row_labels=row_labels)
    typer.echo(saved_message(files, grid, parameters, seconds))


register_text_commands(app)  # generate, eval shapes

ROOT_ALIASES = {"train": train, "sample": sample}
