"""Points benchmark: export a run as the shipped model, and measure a model on its world.

    python benchmarks/points/run.py export runs/points512 noisecraft/assets/points_shapes
    python benchmarks/points/run.py eval noisecraft/assets/points_shapes --per-prompt 4 \
        --out benchmarks/points/results_shipped.json
    python benchmarks/points/run.py measure benchmarks/points/results_shipped_clouds_g2.npz --per-prompt 2 \
        --metrics cd emd --out benchmarks/points/results_shipped_emd.json

``eval`` writes one JSON record: prompt correctness on the seen and held-out prompts (the analyser,
noisecraft.points.analyzer), the PointFlow metrics (MMD, COV, 1-NNA with CD, optionally EMD; clouds normalised to
the unit sphere, see noisecraft.points.metrics) of all generated clouds against a world reference set of the same
prompts and size, and the same measurements for a second independent world sample (the score of a perfect model).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from noisecraft.points.evaluate import evaluate_model, world_baseline
from noisecraft.points.pipeline import PointsPipeline


def export_asset(run: Path, asset: Path) -> Path:
    """config.json + the EMA weights in float16 as the only weights file (metadata weights=ema)."""
    asset.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "config.json", asset / "config.json")
    ema = safetensors.torch.load_file(run / "ema.safetensors")
    half = {k: v.half() if v.is_floating_point() else v for k, v in ema.items()}
    safetensors.torch.save_file(half, asset / "model.safetensors", metadata={"format": "pt", "weights": "ema"})
    return asset


def measure_saved(path: Path, per_prompt: int, metrics: tuple[str, ...], orientation: str, out: Path) -> dict:
    """The PointFlow metrics (e.g. EMD, too slow for a full eval on a shared CPU) of the first ``per_prompt`` saved
    clouds of every prompt against a fresh world reference set of the same prompts and size."""
    from noisecraft.points.evaluate import world_reference
    from noisecraft.points.metrics import evaluate

    saved = np.load(path)
    generated, reference = [], []
    for k, key in enumerate(saved.files):
        clouds = saved[key][:per_prompt, :, :3]
        generated.append(clouds)
        reference.append(world_reference(key.replace("_", " "), len(clouds), points=clouds.shape[1],
                                         seed=20_000 + k, orientation=orientation))
    record = {"clouds": str(path), "per_prompt": per_prompt, "prompts": len(saved.files),
              "pointflow": evaluate(np.concatenate(generated), np.concatenate(reference), metrics=metrics)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export")
    export.add_argument("run", type=Path)
    export.add_argument("asset", type=Path)
    ev = sub.add_parser("eval")
    ev.add_argument("model", type=Path)
    ev.add_argument("--per-prompt", type=int, default=4)
    ev.add_argument("--points", type=int, default=None)
    ev.add_argument("--steps", type=int, default=16)
    ev.add_argument("--guidance", type=float, nargs="+", default=[2.0])
    ev.add_argument("--emd", action="store_true")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", type=Path, required=True)
    measure = sub.add_parser("measure")
    measure.add_argument("clouds", type=Path, help="an eval's *_clouds_g*.npz")
    measure.add_argument("--per-prompt", type=int, default=1, help="the first K clouds of each prompt")
    measure.add_argument("--metrics", nargs="+", default=["cd", "emd"])
    measure.add_argument("--orientation", default="upright")
    measure.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "measure":
        print(json.dumps(measure_saved(args.clouds, args.per_prompt, tuple(args.metrics), args.orientation,
                                       args.out), indent=1))
        return
    if args.command == "export":
        print(export_asset(args.run, args.asset))
        return
    pipeline = PointsPipeline.load(args.model, device=args.device)
    metrics = ("cd", "emd") if args.emd else ("cd",)
    record = {"machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                          "platform": platform.platform(), "device": args.device,
                          "threads": torch.get_num_threads()},
              "model_config": {k: pipeline.spec.to_dict()[k] for k in ("points", "net", "text_encoder")},
              "runs": []}
    for guidance in args.guidance:
        clouds: dict = {}
        run = evaluate_model(pipeline, per_prompt=args.per_prompt, points=args.points, steps=args.steps,
                             guidance=guidance, metrics=metrics, log=print, clouds_out=clouds)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # the clouds, to re-analyse or re-measure without sampling
        np.savez_compressed(args.out.with_name(f"{args.out.stem}_clouds_g{guidance:g}.npz"),
                            **{prompt.replace(" ", "_"): value for prompt, value in clouds.items()})
        record["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "prompts"}, indent=1))
    record["world_baseline"] = world_baseline(per_prompt=args.per_prompt, points=args.points or pipeline.spec.points,
                                              metrics=metrics, world=pipeline.spec.world)
    print("baseline", json.dumps(record["world_baseline"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
