"""``noisecraft demo``: the embedded default job — prompts drawn by the shipped text-to-image and video models, then
a class-conditional digits model trained on the CPU."""

from __future__ import annotations

from pathlib import Path

# Sized for 2 CPU cores: ~5 minutes of training gives clean digits of the asked class at 16x16 (the benchmark
# time_to_quality.py reaches a Frechet distance at the level of real data after 450 steps of this recipe).
DEMO_CONFIG = {
    "data": "digits",
    "resolution": 16,
    "preset": "small",
    "parameterization": "edm",
    "sample_steps": 24,
    "train": {"batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "ema_decay": 0.999, "checkpoint_every": 200,
              "sample_every": 0, "log_every": 25, "seed": 0, "max_minutes": 8.0},
}


DEMO_PROMPTS = ["a large red circle", "two green triangles", "a blue square and a yellow circle",
                "a red circle to the left of a blue square", "a purple square above a green circle"]


def text_to_image_grid(out: Path) -> Path:
    """One row of images per prompt from the shipped text-to-image model (seconds on a CPU)."""
    from noisecraft.images.cli_text import load_text_model
    from noisecraft.images.text2image import write_prompt_grid

    return write_prompt_grid(load_text_model(None), DEMO_PROMPTS, out / "text_to_image.png", guidance=3.0,
                             steps=12)


DEMO_VIDEO_PROMPT = "a red circle moving right"


def text_to_video_gif(out: Path, *, clips: int = 3, steps: int = 8) -> Path:
    """``clips`` clips of :data:`DEMO_VIDEO_PROMPT` from the shipped video model side by side in one GIF, enlarged
    4x (seconds on a CPU); each clip's own GIF, frame strip and record go to ``out/text_to_video/``."""
    from noisecraft.training.checkpoint import atomic_write_bytes
    from noisecraft.video.cli import load_video_model
    from noisecraft.video.io import sheet_gif

    pipeline = load_video_model(None)
    generation = pipeline.generate({"prompt": DEMO_VIDEO_PROMPT, "batch": clips, "steps": steps}, seed=0)
    pipeline.save_outputs(generation, out / "text_to_video")
    path = out / "text_to_video.gif"
    atomic_write_bytes(path, sheet_gif(generation.items, generation.parameters))
    return path


def run_demo(out: str | Path, *, steps: int = 800, guidance: float = 2.0) -> dict[str, Path]:
    """Write a grid of prompts drawn by the shipped text-to-image model and a GIF of clips from the shipped video
    model (seconds each), then train (or resume) the demo model in ``out`` and write one row of samples per digit
    and a loss curve."""
    from noisecraft.api import load, train
    from noisecraft.cli_common import progress_bar
    from noisecraft.training.checkpoint import latest_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print("noisecraft demo: drawing prompts with the shipped text-to-image model ...", flush=True)
    text_grid = text_to_image_grid(out)
    print(f"text-to-image with the shipped shapes model: {text_grid}", flush=True)
    print(f"noisecraft demo: {DEMO_VIDEO_PROMPT!r} with the shipped video model ...", flush=True)
    video_gif = text_to_video_gif(out)
    print(f"text-to-video with the shipped moving-shapes model: {video_gif}", flush=True)
    config = DEMO_CONFIG | {"out_dir": str(out), "train": DEMO_CONFIG["train"] | {"steps": steps}}
    print(f"training a class-conditional digits model ({steps} steps) in {out}", flush=True)
    train(config, resume=latest_checkpoint(out) is not None)
    pipeline = load(out)
    names = pipeline.spec.class_names
    per_class = 10
    labels = [name for name in names for _ in range(per_class)]
    print(f"sampling {len(labels)} digits ...", flush=True)
    images, parameters = pipeline.sample(len(labels), labels=labels, guidance=guidance, steps=24, sampler="heun",
                                         seed=0, progress=progress_bar("sampling"))
    grid, _ = pipeline.save(images, parameters, out / "samples_final", nrow=per_class, row_labels=names)
    paths = {"grid": grid, "loss_curve": out / "loss.png", "model": out, "text_to_image": text_grid,
             "text_to_video": video_gif}
    print(f"sample grid (one row per digit, guidance {guidance}): {grid}")
    print(f"loss curve: {paths['loss_curve']}")
    print(f"model folder: {out}  (try: noisecraft sample {out} --label 7 -n 8)")
    return paths
