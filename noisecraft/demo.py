"""``noisecraft demo``: the embedded default job — a class-conditional digits model trained on the CPU."""

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


def run_demo(out: str | Path, *, steps: int = 800, guidance: float = 2.0) -> dict[str, Path]:
    """Write a grid of prompts drawn by the shipped text-to-image model (seconds), then train (or resume) the demo
    model in ``out`` and write one row of samples per digit and a loss curve."""
    from noisecraft.api import load, train
    from noisecraft.cli_common import progress_bar
    from noisecraft.training.checkpoint import latest_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print("noisecraft demo: drawing prompts with the shipped text-to-image model ...", flush=True)
    text_grid = text_to_image_grid(out)
    print(f"text-to-image with the shipped shapes model: {text_grid}", flush=True)
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
    paths = {"grid": grid, "loss_curve": out / "loss.png", "model": out, "text_to_image": text_grid}
    print(f"sample grid (one row per digit, guidance {guidance}): {grid}")
    print(f"loss curve: {paths['loss_curve']}")
    print(f"model folder: {out}  (try: noisecraft sample {out} --label 7 -n 8)")
    return paths
