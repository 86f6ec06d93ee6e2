"""``noisecraft video generate | train``: thin commands over ``noisecraft.video``.

User mistakes (a bad option value, an unreadable clip, a model folder of another kind) are raised as ValueError /
FileNotFoundError with a one-line message naming the option or file; the main CLI prints them as one ``error:`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft.cli_common import step_progress_bar
from noisecraft.diffusion.samplers import SAMPLERS

app = typer.Typer(help="Text-to-video: generate clips from prompts (animated GIF, PNG strip, MP4 with PyAV) with "
                       "the shipped moving-shapes model, or train one grown from a text-to-image model on the "
                       "moving-shapes world or your clips.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "video_shapes"


def load_video_model(model: Optional[Path], device: str = "cpu"):
    """The video pipeline of ``model`` (default: the shipped moving-shapes model)."""
    from noisecraft import registry
    from noisecraft.video.pipeline import VideoPipeline

    path = model or DEFAULT_MODEL
    if not (Path(path) / "config.json").is_file() and not Path(path).is_dir():
        raise FileNotFoundError(f"{path}: no such model folder" + ("" if model else
                                " (the shipped video model is missing; reinstall noisecraft or pass --model)"))
    modality, folder = registry.for_model_dir(path)
    if modality.name != "video":
        raise ValueError(f"{path} is a {modality.name} model, not a video model; see `noisecraft {modality.name} "
                         "--help`")
    return VideoPipeline.load(folder, device=device)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help='What happens, e.g. "a red circle moving right", "a small blue '
                                               'square growing", "a green triangle moving up and a yellow circle '
                                               'moving left". Compose with AND, weight with ":1.5", negate with '
                                               '":-1".')],
    frames: Annotated[Optional[int], typer.Option("--frames", help="Frames per clip, from 1 to the model's maximum "
                                                                   "(default: the model's training length).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Sampler steps.")] = 12,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 3.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of clip 0 (clip i uses seed + i).")] = 0,
    batch: Annotated[int, typer.Option("--batch", help="Number of clips.")] = 1,
    negative: Annotated[Optional[str], typer.Option("--negative", help="Negative prompt: replaces the "
                                                                       "unconditional branch of guidance.")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help=f"Sampler: {', '.join(SAMPLERS)}.")] = "dpmpp_2m",
    model: Annotated[Optional[Path], typer.Option("--model", help="Video model folder (default: the shipped "
                                                                  "moving-shapes model).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")] = "cpu",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("outputs/video"),
) -> None:
    """Generate clips of PROMPT: one GIF and one PNG strip per clip (MP4 too with PyAV) and generation.json."""
    from noisecraft.cli_common import prepare_output_folder

    if frames is not None and frames < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    pipeline = load_video_model(model, device)
    spec = pipeline.spec
    if frames is not None and frames > spec.max_frames:
        raise ValueError(f"--frames {frames} is outside this model's range 1-{spec.max_frames} (it was trained on "
                         f"{spec.frames}-frame clips)")
    params = {"prompt": prompt, "steps": steps, "guidance": guidance, "batch": batch, "sampler": sampler,
              "negative_prompt": negative}
    if frames is not None:
        params["frames"] = frames
    from noisecraft.protocol import ParameterError

    try:
        generation = pipeline.generate(params, seed=seed, progress=step_progress_bar("sampling"))
    except ParameterError as error:  # name the option people typed, not the request key
        option = {"prompt": "PROMPT", "negative_prompt": "--negative"}.get(error.name, f"--{error.name}")
        raise ValueError(f"{option}: {str(error).split(': ', 1)[1]}") from None
    files = pipeline.save_outputs(generation, prepare_output_folder(out, "clip_*"))
    for note in generation.notes:
        typer.echo(note)
    verdicts = [clip.get("matches_prompt") for clip in _analysis(files[-1])]
    summary = f"; motion analyser: {sum(map(bool, verdicts))}/{len(verdicts)} clips match the prompt" if verdicts \
        else ""
    typer.echo(f"wrote {len(generation.items)} clip(s) to {out} ({generation.seconds:.1f} s, "
               f"{generation.parameters['nfe']} NFE){summary}")


def _analysis(sidecar: Path) -> list[dict]:
    import json

    clips = json.loads(sidecar.read_text())["clips"]
    return [clip["analysis"] for clip in clips if "analysis" in clip]


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="'world' (the moving-shapes world) or a folder of GIF/MP4 clips with "
                                             "captions (metadata.jsonl or .txt sidecars).")] = "world",
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create (or continue with "
                                                          "--resume).")] = ...,
    frames: Annotated[int, typer.Option(help="Frames per training clip.")] = 8,
    grow_from: Annotated[Optional[Path], typer.Option("--grow-from", help="Text-to-image model whose weights "
                                                      "initialise the spatial layers and text encoder (default: "
                                                      "the shipped shapes model).")] = None,
    scratch: Annotated[bool, typer.Option("--scratch", help="Train from scratch instead of growing (--preset, "
                                                            "--text-encoder apply).")] = False,
    preset: Annotated[str, typer.Option(help="Network size from scratch: tiny, small or base.")] = "small",
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="From scratch: minilm (frozen, "
                                                        "default) or learned.")] = None,
    freeze_spatial: Annotated[bool, typer.Option("--freeze-spatial", help="Train only the temporal layers of a "
                                                 "grown model.")] = False,
    joint_images: Annotated[bool, typer.Option("--joint-images/--no-joint-images", help="World: train on still "
                                               "shapes-world images beside the clips.")] = True,
    resolution: Annotated[int, typer.Option(help="World: frame side in pixels (a grown model needs its image "
                                                 "model's).")] = 32,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget in minutes.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 20000 unless --minutes).")] = None,
    batch_size: Annotated[int, typer.Option(help="Clips per optimizer step.")] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data and noise.")] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Clip folders: leave out unreadable, too short or "
                                                              "odd-sized clips (listed) instead of stopping.")] = False,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of further options (temporal, world, "
                                                        "diffusion, train, ...); the command-line options "
                                                        "win.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its latest checkpoint.")] = False,
) -> None:
    """Train a video diffusion model on DATA and save it to OUT (grown from the shipped text-to-image model)."""
    from noisecraft.cli_common import load_json
    from noisecraft.video.training import train_video

    options = load_json(config) if config is not None else {}
    options |= {"data": data, "out_dir": str(out), "frames": frames, "freeze_spatial": freeze_spatial,
                "joint_images": joint_images, "resolution": resolution, "minutes": minutes, "steps": steps,
                "batch_size": batch_size, "lr": lr, "seed": seed, "skip_bad": skip_bad}
    if scratch and grow_from is not None:
        raise ValueError("--scratch and --grow-from contradict each other; pass one")
    if scratch:
        options |= {"grow_from": None, "preset": preset}
        if text_encoder is not None:
            options["text_encoder"] = text_encoder
    else:
        if grow_from is not None:
            options["grow_from"] = str(grow_from)
        if text_encoder is not None or preset != "small":
            raise ValueError("--preset and --text-encoder choose a network from scratch; a grown model keeps its "
                             "image model's (add --scratch)")
    result = train_video(options, resume=resume)
    typer.echo(f"trained {result.step} steps; model in {out}")
