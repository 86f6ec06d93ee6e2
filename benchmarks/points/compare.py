"""Architecture check of the points model: the point transformer (self-attention between points) against its
PointNet / DeepSets-style ablation (``mixer="pool"``: each point sees only a global max-pooled feature), trained
for the same number of optimizer steps with everything else equal (512 points, dim 64, 3 blocks, MiniLM captions,
batch 16, lr 1e-3 with a cosine decay), then measured by ``evaluate_model`` (prompt correctness and 1-NNA / MMD /
COV with CD).

    OMP_NUM_THREADS=1 python benchmarks/points/compare.py attention --steps 120 --out runs/points_cmp
    OMP_NUM_THREADS=1 python benchmarks/points/compare.py pool --steps 120 --out runs/points_cmp

Equal steps rather than equal minutes because the shared machine's load changes from minute to minute; the
seconds per step (the two run at the same time, so under the same load) are recorded as the cost. Each writes
``<out>/<mixer>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from scipy.special import erfinv

from noisecraft.points.evaluate import evaluate_model
from noisecraft.points.pipeline import PointsPipeline
from noisecraft.points.training import train_points


@torch.no_grad()
def validation_loss(pipeline: PointsPipeline, count: int = 64, seed: int = 99) -> float:
    """The EDM-weighted denoising loss ``lambda(sigma) |D(x + sigma n; caption) - x|^2`` (per coordinate) of
    ``count`` fresh world clouds (seed 99; training used seed 0) at 8 noise levels (the octiles of the training
    distribution ln sigma ~ N(-1.2, 1.2^2)), with the same noise for every model: a low-variance comparison."""
    from noisecraft.points.world import PointsWorld

    world = PointsWorld(pipeline.spec.world, size=count, seed=seed)
    items = [world[i] for i in range(count)]
    x0 = torch.as_tensor(np.stack([item["points"] for item in items]))
    context, mask = pipeline.model.encode_text([item["caption"] for item in items])
    sigma_data = pipeline.diffusion.sigma_data
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for q in np.arange(1, 16, 2) / 16:
        sigma = float(np.exp(-1.2 + 1.2 * math.sqrt(2) * erfinv(2 * q - 1)))
        noisy = x0 + sigma * torch.randn(x0.shape, generator=generator)
        weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
        denoised = pipeline.model(noisy, torch.full((count,), sigma), context=context, context_mask=mask)
        losses.append(weight * float(((denoised - x0) ** 2).mean()))
    return float(np.mean(losses))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mixer", choices=["attention", "pool"])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--per-prompt", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-train", action="store_true", help="measure the run already in OUT/MIXER")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = args.out / args.mixer
    if not args.skip_train:
        train_points({"data": "world", "out_dir": str(run), "points": 512, "preset": "small",
                     "net": {"dim": 64, "depth": 3, "heads": 4, "mixer": args.mixer}, "text_encoder": "minilm",
                     "batch_size": 16, "lr": 1e-3, "steps": args.steps,
                     "train": {"checkpoint_every": 0, "log_every": 25, "warmup_steps": 50, "lr_decay": "cosine"}},
                    progress=False)
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    pipeline = PointsPipeline.load(run)
    previous = args.out / f"{args.mixer}.json"
    if args.skip_train and previous.is_file():  # the same seeds give the same evaluation: reuse it
        record = json.loads(previous.read_text())["evaluation"]
    else:
        record = evaluate_model(pipeline, per_prompt=args.per_prompt, steps=16, guidance=2.0)
    train_logs = [entry for entry in logs if entry.get("kind") == "train"]
    steps = json.loads((run / "config.json").read_text())["step"]
    summary = {"mixer": args.mixer, "steps": steps,
               "seconds_per_step": round(train_logs[-1]["wall_time"] / train_logs[-1]["step"], 2),
               "parameters": sum(p.numel() for p in pipeline.model.denoiser.parameters()),
               "train_loss_last_logs": [entry["loss"] for entry in train_logs[-2:]],
               "validation_loss": validation_loss(pipeline),
               "correct_seen": record["correct_seen"], "correct_held_out": record["correct_held_out"],
               **{k: v for k, v in record["pointflow"].items() if k.startswith(("1-NNA", "MMD", "COV"))}}
    print(json.dumps(summary, indent=1))
    (args.out / f"{args.mixer}.json").write_text(json.dumps({"summary": summary, "evaluation": record}, indent=1))


if __name__ == "__main__":
    main()
