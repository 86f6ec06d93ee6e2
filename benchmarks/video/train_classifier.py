"""Train the moving-shapes classifier behind FD-MSC and ship it (noisecraft/assets/video_classifier).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/train_classifier.py --minutes 4 \
        --out noisecraft/assets/video_classifier

Training clips are the world's training distribution (``make_example(seed=0, i)``: held-out combinations never
appear); accuracy is measured on fresh clips (seed 1) and on clips of the held-out (colour, shape) pairs and
(colour, shape, motion) triples, which the classifier never saw. Light Gaussian noise on half of the training clips
keeps its features steady on the imperfect clips a generator makes. The measured accuracies go into the shipped
config.json (``info``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from noisecraft.video.classifier import (ClassifierConfig, MovingShapesClassifier, classifier_loss, clip_targets,
                                         head_accuracy, save_classifier)
from noisecraft.video.world import (MOTIONS, SHAPES, MotionSpec, VideoPromptSpec, VideoWorldConfig, clip_from_spec,
                                    clip_to_tensor, make_example, render_clip)


def render_set(clips: list, resolution: int = 32) -> torch.Tensor:
    """``[N, 3, T, H, W]`` uint8 (the renders are exact 8-bit images)."""
    return torch.stack([((clip_to_tensor(render_clip(c, resolution)) + 1) * 127.5).round().to(torch.uint8)
                        for c in clips])


def held_out_clips(n: int, frames: int, config: VideoWorldConfig, seed: int = 2) -> list:
    """``n`` clips each showing one held-out combination (a held-out triple, or a held-out pair in any motion)."""
    specs = [MotionSpec(*triple) for triple in config.held_out_motions]
    specs += [MotionSpec(colour, shape, motion) for colour, shape in config.held_out_pairs for motion in MOTIONS]
    rng = np.random.default_rng(seed)
    return [clip_from_spec(VideoPromptSpec((specs[i % len(specs)],)), rng, frames) for i in range(n)]


def as_float(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


@torch.no_grad()
def accuracy(model: MovingShapesClassifier, pixels: torch.Tensor, clips: list) -> dict:
    model.eval()
    logits = [model(as_float(pixels[i:i + 128])) for i in range(0, len(pixels), 128)]
    merged = {k: torch.cat([out[k] for out in logits]) for k in logits[0]}
    model.train()
    return {k: round(v, 4) for k, v in head_accuracy(merged, clip_targets(clips)).items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-clips", type=int, default=6000)
    parser.add_argument("--test-clips", type=int, default=600)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=4.0, help="Training time budget (data rendering apart).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("noisecraft/assets/video_classifier"))
    parser.add_argument("--cache", type=Path, default=None, help="Keep the rendered clips in this .pt file.")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    world = VideoWorldConfig(frames=args.frames)
    start = time.perf_counter()
    train = [make_example(0, i, world)[0] for i in range(args.train_clips)]
    test = [make_example(1, i, world)[0] for i in range(args.test_clips)]
    held = held_out_clips(args.test_clips // 2, args.frames, world)
    if args.cache is not None and args.cache.is_file():  # rendering is a pure function of the clips above
        train_px, test_px, held_px = torch.load(args.cache)
        if (len(train_px), len(test_px), len(held_px), train_px.shape[2]) != (len(train), len(test), len(held),
                                                                              args.frames):
            raise ValueError(f"{args.cache} holds clips of other settings; delete it or pass another --cache")
    else:
        train_px, test_px, held_px = render_set(train), render_set(test), render_set(held)
        if args.cache is not None:
            torch.save((train_px, test_px, held_px), args.cache)
    targets = clip_targets(train)
    print(f"rendered {len(train)} + {len(test)} + {len(held)} clips in {time.perf_counter() - start:.0f} s",
          flush=True)

    model = MovingShapesClassifier(ClassifierConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(args.seed)
    budget, step, start = args.minutes * 60, 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        order = torch.randperm(len(train), generator=generator)
        for first in range(0, len(order) - args.batch_size + 1, args.batch_size):
            index = order[first:first + args.batch_size]
            x = as_float(train_px[index])
            noisy = torch.rand(len(x), generator=generator) < 0.5
            sigma = 0.15 * torch.rand(len(x), 1, 1, 1, 1, generator=generator) * noisy.view(-1, 1, 1, 1, 1)
            x = x + sigma * torch.randn(x.shape, generator=generator)
            progress = min((time.perf_counter() - start) / budget, 1.0)
            for group in optimizer.param_groups:  # cosine decay over the time budget
                group["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * progress))
            loss = classifier_loss(model(x), {k: v[index] for k, v in targets.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
            if time.perf_counter() - start >= budget:
                break
    info = {"trained_steps": step, "batch_size": args.batch_size, "train_clips": len(train), "frames": args.frames,
            "minutes": args.minutes, "seed": args.seed,
            "command": "OMP_NUM_THREADS=1 python benchmarks/video/train_classifier.py "
                       + " ".join(sys.argv[1:] if argv is None else argv),
            "accuracy_fresh_clips": accuracy(model, test_px, test),
            "accuracy_held_out_combinations": accuracy(model, held_px, held)}
    print(info, flush=True)
    print(f"saved to {save_classifier(model, args.out, info)}")


if __name__ == "__main__":
    main()
