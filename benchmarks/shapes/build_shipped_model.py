"""Train, export, benchmark and illustrate the text-to-image model that ships in noisecraft/assets/shapes_t2i.

One command does everything (defaults shown; an existing run folder is resumed):

    python benchmarks/shapes/build_shipped_model.py --config configs/shapes_t2i.json --run runs/shapes_t2i \
        --asset noisecraft/assets/shapes_t2i --results benchmarks/shapes/results_shapes_t2i.json \
        --grid docs/images/t2i_grid.png

Configs: ``configs/shapes_t2i_shipped.json`` is the exact recipe of the shipped model (H200, 10 min, batch 256,
from scratch); ``configs/shapes_t2i_finetune_cpu.json`` fine-tunes a model (``init_from``, by default the shipped
one) on a 2-core CPU with more relation, pair and count scenes (measured, no gain: see RESULTS.md);
``configs/shapes_t2i.json`` (the default) is the recipe for the next GPU run: the shipped architecture trained from
scratch with the frozen MiniLM text encoder (which learned much faster than the learned encoder in a CPU A/B, see
RESULTS.md), data cached on the device, batch 512; ``configs/shapes_t2i_continue.json`` instead continues the
shipped model (``init_from``);
``configs/shapes_t2i_cpu.json`` a smaller U-Net trained from scratch in 70 CPU minutes. On a lent GPU machine,
``benchmarks/shapes/device_build.sh`` wraps this script in one call.

It trains for the config's ``train.max_minutes`` (``--max-minutes`` overrides it) on the GPU when there is one,
exports the EMA weights in float16 as the asset, draws the prompt grid and runs the benchmark of
``noisecraft eval shapes`` (8 images per prompt) with the CLI's default sampling settings. ``--guidance-sweep 2 3 5``
also scores other guidance scales (16 images per prompt, seed 1, so that the choice of the CLI default is not made on
the reported images).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import safetensors.torch
import torch

from noisecraft.api import train
from noisecraft.images.cli_text import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, load_text_model
from noisecraft.images.text2image import write_prompt_grid
from noisecraft.shapes.benchmark import format_table, run_benchmark, save_results
from noisecraft.shapes.world import ShapesWorldConfig
from noisecraft.training.checkpoint import EMA_FILE, MODEL_FILE, latest_checkpoint, read_config

GRID_PROMPTS = ["a large red circle", "a small blue square", "two green triangles", "three yellow circles",
                "a red circle to the left of a blue square", "a green square above a purple triangle",
                "a blue triangle and a yellow square", "a purple square with a red triangle on its right",
                "a yellow triangle", "a purple circle", "a blue triangle above a green square"]


def export_asset(run: Path, asset: Path) -> Path:
    """``config.json`` + the EMA weights of ``run``, in float16 (half the size), as the asset's only weights file
    ``model.safetensors`` (a loadable model folder; the sampling weights without a second copy)."""
    asset.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "config.json", asset / "config.json")
    ema = safetensors.torch.load_file(run / EMA_FILE)
    half = {k: v.half() if v.is_floating_point() else v for k, v in ema.items()}
    safetensors.torch.save_file(half, asset / MODEL_FILE, metadata={"format": "pt", "weights": "ema"})
    return asset


def make_grid(model: Path, path: Path, per_prompt: int = 8, device: str = "cpu") -> Path:
    """One row per prompt of ``GRID_PROMPTS`` (the last three are held-out combinations)."""
    return write_prompt_grid(load_text_model(model, device), GRID_PROMPTS, path, per_prompt=per_prompt,
                             guidance=DEFAULT_GUIDANCE, steps=DEFAULT_STEPS, sampler=DEFAULT_SAMPLER)


def evaluate(model: Path, results: Path | None, device: str, *, guidance: float = DEFAULT_GUIDANCE,
             n_per_prompt: int = 8, seed: int = 0) -> dict:
    """The benchmark of ``noisecraft eval shapes`` with the CLI's steps and sampler at ``guidance``."""
    pipeline = load_text_model(model, device)
    world = ShapesWorldConfig.from_dict({**pipeline.spec.training.get("world", {}),
                                         "resolution": pipeline.spec.resolution})

    def generate(prompts, seed):
        return pipeline.sample(len(prompts), prompt=prompts, guidance=guidance, steps=DEFAULT_STEPS,
                               sampler=DEFAULT_SAMPLER, seed=seed)[0]

    start = time.perf_counter()
    scores = run_benchmark(generate, n_per_prompt=n_per_prompt, seed=seed, batch_size=128, config=world)
    scores["settings"] = {"n_per_prompt": n_per_prompt, "seed": seed, "guidance": guidance, "steps": DEFAULT_STEPS,
                          "sampler": DEFAULT_SAMPLER, "device": device,
                          "seconds": round(time.perf_counter() - start, 1)}
    if results is not None:
        save_results(scores, results)
    print(format_table(scores), flush=True)
    return scores


def guidance_sweep(model: Path, scales: list[float], path: Path, device: str, n_per_prompt: int = 16) -> None:
    """Overall / held-out / per-category scores at each guidance scale (seed 1: not the reported images)."""
    rows = []
    for scale in scales:
        print(f"--- guidance {scale}", flush=True)
        scores = evaluate(model, None, device, guidance=scale, n_per_prompt=n_per_prompt, seed=1)
        rows.append({"guidance": scale, "overall": scores["overall"], "held_out": scores["held_out"],
                     "categories": scores["categories"], "fd": scores.get("fd"), "settings": scores["settings"]})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=1) + "\n")  # after each scale: a cut-short sweep keeps its rows


def training_speed(run: Path) -> str:
    """Median steps/s of the run's log (each record covers ``log_every`` steps)."""
    rates = sorted(json.loads(line)["it_per_s"] for line in (run / "log.jsonl").read_text().splitlines()
                   if '"it_per_s"' in line)
    return f"{rates[len(rates) // 2]:.1f} steps/s (median of {len(rates)} log windows)" if rates else "no log"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/shapes_t2i.json"))
    parser.add_argument("--run", type=Path, default=Path("runs/shapes_t2i"))
    parser.add_argument("--asset", type=Path, default=Path("noisecraft/assets/shapes_t2i"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/shapes/results_shapes_t2i.json"))
    parser.add_argument("--grid", type=Path, default=Path("docs/images/t2i_grid.png"))
    parser.add_argument("--max-minutes", type=float, default=None, help="override train.max_minutes")
    parser.add_argument("--skip-train", action="store_true", help="export/evaluate an existing run")
    parser.add_argument("--skip-eval", action="store_true", help="stop after the export and the grid")
    parser.add_argument("--guidance-sweep", type=float, nargs="*", default=[],
                        help="also score these guidance scales (seed 1)")
    parser.add_argument("--sweep-per-prompt", type=int, default=16, help="images per prompt in the sweep")
    parser.add_argument("--sweep-results", type=Path, default=Path("benchmarks/shapes/guidance_sweep.json"))
    parser.add_argument("--sweep-only", action="store_true", help="only the guidance sweep of --asset as it is")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolutions
    if args.sweep_only:
        guidance_sweep(args.asset, args.guidance_sweep, args.sweep_results, device, args.sweep_per_prompt)
        return
    config = json.loads(args.config.read_text()) | {"out_dir": str(args.run)}
    if args.max_minutes is not None:
        config["train"] = config.get("train", {}) | {"max_minutes": args.max_minutes}
    if not args.skip_train:
        result = train(config, resume=latest_checkpoint(args.run) is not None, progress=False)
        print(f"trained to step {result.step} in {result.wall_time:.0f} s ({result.reason}) on {device} "
              f"({torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or 'cpu'}); "
              f"{training_speed(args.run)}", flush=True)
    export_asset(args.run, args.asset)
    print(f"exported to {args.asset} (step {read_config(args.asset)['step']})", flush=True)
    make_grid(args.asset, args.grid, device=device)
    if args.skip_eval:
        return
    evaluate(args.asset, args.results, device)
    if args.guidance_sweep:
        guidance_sweep(args.asset, args.guidance_sweep, args.sweep_results, device, args.sweep_per_prompt)


if __name__ == "__main__":
    main()
