"""Why "a red circle AND a blue square" fails on the shipped model while "a red circle and a blue square" works:
the composition against the plain sentence over a range of guidance scales, same seeds.

With the concepts sharing the guidance (``noisecraft.text.prompts.guidance_shares``) the composition at scale g is
D_u + g (D_circle + D_square) / 2 - g D_u; before that fix, the CLI's g = 3 was a total scale of 6, which is the
``--scales 6`` row here. If no scale draws both objects, the guidance arithmetic is not what is missing: the model
reads each concept as a whole scene ("a red circle" = one red circle and nothing else), so the conjunction of two
concepts asks for a scene in neither conditional.

    OMP_NUM_THREADS=1 python benchmarks/shapes/composition_scale.py --out benchmarks/shapes/composition_scale_shipped.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from noisecraft.images.cli_text import DEFAULT_SAMPLER, DEFAULT_STEPS, load_text_model
from noisecraft.shapes.analyzer import analyze, diagnose
from noisecraft.shapes.world import parse_prompt

MEANING = "a red circle and a blue square"
PROMPTS = {"composition": "a red circle AND a blue square", "sentence": MEANING}


def outcome(objects) -> dict:
    """What one image holds: whether it is exactly the scene, and whether each object is there at all."""
    found = {(o.colour, o.shape) for o in objects}
    return {"exact": diagnose(parse_prompt(MEANING), objects) is None, "red circle": ("red", "circle") in found,
            "blue square": ("blue", "square") in found, "objects": len(objects)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--n", type=int, default=8, help="images per prompt and scale (seeds seed .. seed + n - 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.5, 6.0])
    parser.add_argument("--out", type=Path, default=None, help="optional JSON file for the counts")
    args = parser.parse_args()
    pipeline = load_text_model(args.model, "cpu")
    started, rows = time.perf_counter(), []
    for scale in args.scales:
        for name, prompt in PROMPTS.items():
            images, _ = pipeline.sample(args.n, prompt=prompt, guidance=scale, steps=DEFAULT_STEPS,
                                        sampler=DEFAULT_SAMPLER, seed=args.seed)
            outcomes = [outcome(analyze(image)) for image in images]
            row = {"prompt": prompt, "guidance": scale,
                   **{key: sum(o[key] for o in outcomes) for key in ("exact", "red circle", "blue square")},
                   "empty": sum(o["objects"] == 0 for o in outcomes)}
            rows.append(row)
            print(f"g={scale:<4} {name:<12} exact {row['exact']}/{args.n}, red circle {row['red circle']}, "
                  f"blue square {row['blue square']}, empty {row['empty']}", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"model": pipeline.source, "n": args.n, "seed": args.seed,
                                        "steps": DEFAULT_STEPS, "sampler": DEFAULT_SAMPLER, "rows": rows},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
