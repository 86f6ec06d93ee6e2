"""Prompts a new user might type that the shapes world's caption grammar never produces ("a red ball", "three blue
dots"): does the model still draw the scene they mean?

Each prompt is paired with its canonical meaning in the grammar; images are generated from the free phrasing at the
CLI defaults and checked with the analyzer against the canonical prompt. A model with a learned word-level encoder
sees the unknown words as ``<unk>``; a frozen sentence encoder (MiniLM) can carry their meaning.

    python benchmarks/shapes/free_phrasing.py                      # the shipped model
    python benchmarks/shapes/free_phrasing.py --model runs/mine    # any text-to-image model folder
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from noisecraft.images.cli_text import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, load_text_model
from noisecraft.shapes.analyzer import check

# (what a user types, what it means in the caption grammar)
PROMPTS = [
    ("a red ball", "a red circle"),
    ("a blue box", "a blue square"),
    ("a big green triangle", "a large green triangle"),
    ("a tiny yellow square", "a small yellow square"),
    ("a red circle next to a blue square", "a red circle and a blue square"),
    ("three blue dots", "three blue circles"),
    ("a violet square", "a purple square"),
    ("a red circle on the left of a green square", "a red circle to the left of a green square"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--n", type=int, default=8, help="images per prompt (seeds seed .. seed + n - 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="optional JSON file for the scores")
    args = parser.parse_args()
    pipeline = load_text_model(args.model, "cpu")
    started, scores = time.perf_counter(), {}
    for free, canonical in PROMPTS:
        with warnings.catch_warnings():  # a learned encoder warns about every unknown word: that is the point here
            warnings.simplefilter("ignore", UserWarning)
            images, _ = pipeline.sample(args.n, prompt=free, steps=DEFAULT_STEPS, sampler=DEFAULT_SAMPLER,
                                        guidance=DEFAULT_GUIDANCE, seed=args.seed)
        scores[free] = sum(check(image, canonical) for image in images)
        print(f"{free:<45} as {canonical:<45} {scores[free]}/{args.n}", flush=True)
    total = sum(scores.values())
    print(f"total {total}/{args.n * len(PROMPTS)} = {total / (args.n * len(PROMPTS)):.3f} "
          f"({time.perf_counter() - started:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps({"model": pipeline.source, "n": args.n, "seed": args.seed, "scores": scores,
                                        "canonical": dict(PROMPTS)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
