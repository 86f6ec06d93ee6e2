"""The README's pictures of the shipped points model: one cloud per prompt (seen and held-out prompts), three views
per row and one turntable GIF, with the analyser's verdict in each title.

    OMP_NUM_THREADS=1 python benchmarks/points/pictures.py --out docs/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noisecraft.points import io as pio
from noisecraft.points.cli import DEFAULT_MODEL
from noisecraft.points.evaluate import judge
from noisecraft.points.pipeline import PointsPipeline

PROMPTS = ("a thin torus", "a tall cylinder", "a flat cone", "a cube", "a tall cone", "a flat sphere")
HELD_OUT = {"a tall cone", "a flat sphere"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=2.0)
    args = parser.parse_args(argv)
    pipeline = PointsPipeline.load(args.model)
    clouds, titles = [], []
    for prompt in PROMPTS:
        cloud = pipeline.sample(1, prompt=prompt, steps=args.steps, guidance=args.guidance, seed=args.seed)[0][0]
        ok = judge(cloud[:, :3], prompt)[0]
        clouds.append(cloud[:, :3])
        titles.append(f"{prompt}{' (held out)' if prompt in HELD_OUT else ''} [{'ok' if ok else 'wrong'}]")
    parameters = {"model": "noisecraft/assets/points_shapes", "prompts": list(PROMPTS), "seed": args.seed,
                  "steps": args.steps, "guidance": args.guidance, "sampler": "heun"}
    pio.write(args.out / "points_views.png", pio.views_png(clouds, titles, parameters))
    pio.write(args.out / "points_turntable.gif", pio.turntable_gif(clouds, size=112, parameters=parameters))
    print("\n".join(titles))


if __name__ == "__main__":
    main()
