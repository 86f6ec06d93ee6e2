"""Bits per dimension of digits models across noise parameterizations (EDM, DDPM eps, v) and training lengths.

For each parameterization and each length in ``--train-steps`` an unconditional U-Net (``--preset``) is trained on
``digits:train`` at ``--resolution`` (8: the native 8x8 images, 64 dimensions), then scored on the first ``--n``
images of ``digits:test`` by ``noisecraft.images.likelihood.bits_per_dim``: the probability-flow ODE from the
model's own sigma_min to its sigma_max (``--steps`` Heun steps on the Karras grid, or RK45 at ``--rtol``),
Hutchinson's divergence with ``--probes`` Rademacher probes, uniform dequantisation of the 8-bit levels
(bits/dim = (-ln p(x_deq) + D ln 128) / (D ln 2)). The test set is the same for all models, as are the
dequantisation noise and probes (seed 0). Writes a JSON report and a markdown table.

Usage (repo root; a shared machine: one thread, in the background)::

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/likelihood/digits_bpd.py --train-steps 200 1000 &
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameterizations", nargs="+", default=["edm", "eps", "v"])
    parser.add_argument("--train-steps", nargs="+", type=int, default=[200, 1000])
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=128, help="test images scored")
    parser.add_argument("--steps", type=int, default=None, help="Heun steps (default: RK45 at --rtol)")
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--probes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "digits_bpd")
    args = parser.parse_args()

    import torch

    from noisecraft.images.likelihood import bits_per_dim, dataset_images
    from noisecraft.images.pipeline import ImagePipeline
    from noisecraft.images.training import train_images

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for parameterization in args.parameterizations:
        for steps in args.train_steps:
            run_dir = args.out / f"{parameterization}_{steps}"
            started = time.perf_counter()
            if not (run_dir / "config.json").exists() or not (run_dir / "ema.safetensors").exists():
                train_images({"data": "digits:train", "out_dir": str(run_dir), "resolution": args.resolution,
                              "preset": args.preset, "parameterization": parameterization, "conditional": False,
                              "sample_steps": 8,
                              "train": {"steps": steps, "batch_size": args.batch_size, "checkpoint_every": 0,
                                        "sample_every": 0, "log_every": max(1, steps // 10), "seed": 0}},
                             progress=False)
            trained = time.perf_counter() - started
            pipeline = ImagePipeline.load(run_dir)
            images, _ = dataset_images("digits:test", pipeline.spec.shape, args.n)
            started = time.perf_counter()
            result = bits_per_dim(pipeline, images, steps=args.steps, rtol=None if args.steps else args.rtol,
                                  hutchinson_samples=args.probes, seed=0, batch_size=64)
            result.pop("per_image")
            row = {"parameterization": parameterization, "train_steps": steps, "train_s": round(trained, 1),
                   "score_s": round(time.perf_counter() - started, 1), **result}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "digits_bpd.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                          "rows": rows}, indent=1))
    lines = ["| parameterization | train steps | bits/dim (± s.e.) | NFE | sigma range | score s |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['parameterization']} | {row['train_steps']} | {row['bits_per_dim']:.3f} ± "
                     f"{row['stderr']:.3f} | {row['nfe']} | {row['sigma_min']:.3g}-{row['sigma_max']:.3g} | "
                     f"{row['score_s']} |")
    (args.out / "digits_bpd.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
