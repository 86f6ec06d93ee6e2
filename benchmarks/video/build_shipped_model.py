"""Train and export the shipped video model (``noisecraft/assets/video_shapes``).

    python benchmarks/video/build_shipped_model.py train --out runs/video_shapes --minutes 44      # CPU recipe
    python benchmarks/video/build_shipped_model.py export runs/video_shapes noisecraft/assets/video_shapes

The CPU recipe (what ships): grown from ``noisecraft/assets/shapes_t2i``, spatial layers frozen (only the temporal
layers train: Make-A-Video's first stage, the cheapest step on a CPU), 8-frame clips of the moving-shapes world,
batch 2, lr 1e-3 after 10 warm-up steps, seed 0, one thread. ``--gpu`` trains every layer on clips and still
images (the full joint recipe) with a larger batch in bf16 (``device_run.sh``).
``export`` writes ``config.json`` and the EMA weights in float16 as the only ``model.safetensors`` (marked as EMA
weights), and records the image model it was grown from by its package path instead of this machine's.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import safetensors.torch
import torch

from noisecraft.training.checkpoint import EMA_FILE, MODEL_FILE, atomic_write_bytes

CPU_RECIPE = {"batch_size": 2, "lr": 1e-3, "seed": 0, "freeze_spatial": True,
              "train": {"log_every": 5, "checkpoint_every": 20, "warmup_steps": 10}}
GPU_RECIPE = {"batch_size": 32, "lr": 5e-4, "seed": 0, "joint_images": True,
              "train": {"log_every": 25, "checkpoint_every": 250, "warmup_steps": 100, "bf16": True,
                        "num_workers": 8}}
PACKAGE_IMAGE_MODEL = "noisecraft/assets/shapes_t2i"


def train(out: Path, minutes: float, gpu: bool) -> None:
    from noisecraft.video.training import train_video

    recipe = GPU_RECIPE if gpu else CPU_RECIPE
    result = train_video({"out_dir": str(out), "minutes": minutes, **recipe}, progress=False)
    print(f"trained {result.step} steps (loss {result.loss:.4f}, {result.wall_time:.0f} s); model in {out}")


def export(run: Path, asset: Path) -> Path:
    config = json.loads((run / "config.json").read_text())
    model_config = config["model_config"]
    if model_config.get("grown_from"):
        model_config["grown_from"] = PACKAGE_IMAGE_MODEL
        model_config["training"]["grow_from"] = PACKAGE_IMAGE_MODEL
    asset.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(asset / "config.json", (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    ema = safetensors.torch.load_file(run / EMA_FILE)
    half = {k: v.half() if v.is_floating_point() else v for k, v in ema.items()}
    tmp = asset / f".{MODEL_FILE}.tmp"
    safetensors.torch.save_file(half, tmp, metadata={"format": "pt", "weights": "ema"})
    tmp.chmod(0o644)  # readable by everyone who installs the package
    shutil.move(tmp, asset / MODEL_FILE)
    print(f"exported step {config['step']} of {run} to {asset} "
          f"({(asset / MODEL_FILE).stat().st_size / 1e6:.1f} MB)")
    return asset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=44.0)
    t.add_argument("--gpu", action="store_true", help="the GPU recipe (all layers, joint images, bf16)")
    e = sub.add_parser("export")
    e.add_argument("run", type=Path)
    e.add_argument("asset", type=Path)
    args = parser.parse_args()
    if args.command == "train":
        if not args.gpu:
            torch.set_num_threads(1)
        train(args.out, args.minutes, args.gpu)
    else:
        export(args.run, args.asset)


if __name__ == "__main__":
    main()
