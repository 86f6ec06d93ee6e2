"""Video benchmark: a model folder scored on the moving-shapes world, and the checks of the checks.

    python benchmarks/video/run.py eval noisecraft/assets/video_shapes --prompts 24 --per-prompt 2 \
        --out benchmarks/video/results_shipped.json
    python benchmarks/video/run.py ground-truth --prompts 24 --per-prompt 2 --out benchmarks/video/ground_truth.json

``eval`` is ``noisecraft eval video`` (noisecraft.video.evaluate.evaluate_model) plus the issue's goals: >= 0.80 of
the seen prompts' clips fully right and >= 0.60 of the held-out ones. ``ground-truth`` scores world clips of the
same random prompts (a perfect generator: every score must be 1, flicker 0) and corrupted copies of them, which
must fail for the named reason: frames reversed (every moving object goes the wrong way; still ones stay right),
frames shuffled (not monotone), objects recoloured (wrong colour) and background noise (flicker > 0), with FD-MSC of
each against a second world sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from noisecraft.shapes.world import COLOURS
from noisecraft.video.classifier import fd_msc, load_classifier
from noisecraft.video.cli_eval import save_record
from noisecraft.video.eval_prompts import random_prompts, reference_clips
from noisecraft.video.evaluate import evaluate_clips, evaluate_model, format_table, model_world
from noisecraft.video.world import VideoWorldConfig, render_clip

GOALS = {"seen": 0.80, "held_out": 0.60}


def _recoloured(clip):
    """Each object in the next palette colour."""
    objects = tuple(dataclasses.replace(o, colour=COLOURS[(COLOURS.index(o.colour) + 1) % len(COLOURS)])
                    for o in clip.objects)
    return render_clip(dataclasses.replace(clip, objects=objects))


def _noisy(frames, seed: int, amplitude: int = 8):
    rng = np.random.default_rng(seed)
    return [np.clip(np.asarray(f, np.int16) + rng.integers(-amplitude, amplitude + 1, np.asarray(f).shape), 0, 255)
            .astype(np.uint8) for f in frames]


def ground_truth(prompts: int, per_prompt: int, frames: int, seed: int) -> dict:
    world = VideoWorldConfig()
    prompt_set = random_prompts(prompts, seed, world)
    truth = [reference_clips(p, per_prompt, frames, 30_000 + k) for k, p in enumerate(prompt_set)]
    references = [f for k, p in enumerate(prompt_set) for _, f in reference_clips(p, per_prompt, frames, 10_000 + k)]
    shuffle = np.random.default_rng(seed)
    variants = {
        "world": lambda clip, f, i: f,
        "reversed": lambda clip, f, i: f[::-1],
        "shuffled": lambda clip, f, i: [f[j] for j in shuffle.permutation(len(f))],
        "recoloured": lambda clip, f, i: _recoloured(clip),
        "background_noise": lambda clip, f, i: _noisy(f, i),
    }
    classifier, record = load_classifier(), {}
    for name, corrupt in variants.items():
        clips = [[corrupt(clip, f, 100 * k + i) for i, (clip, f) in enumerate(group)] for k, group in enumerate(truth)]
        result = evaluate_clips(prompt_set, clips)
        result["fd_msc"] = fd_msc([c for group in clips for c in group], references, classifier)
        for entry in result["per_prompt"].values():  # keep the record small: per-clip details only for models
            del entry["clips"]
        record[name] = result
        print(f"== {name}\n{format_table(result)}\n", flush=True)
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("eval", "ground-truth"):
        command = sub.add_parser(name)
        if name == "eval":
            command.add_argument("model", type=Path)
            command.add_argument("--steps", type=int, default=None)
            command.add_argument("--guidance", type=float, default=None)
            command.add_argument("--device", default="cpu")
        command.add_argument("--prompts", type=int, default=24)
        command.add_argument("--per-prompt", type=int, default=2)
        command.add_argument("--frames", type=int, default=None)
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    machine = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
               "threads": torch.get_num_threads()}
    start = time.perf_counter()
    if args.command == "ground-truth":
        record = {"machine": machine, "variants": ground_truth(args.prompts, args.per_prompt, args.frames or 8,
                                                              args.seed)}
    else:
        import noisecraft

        pipeline = noisecraft.load(args.model, device=args.device)
        record = evaluate_model(pipeline, args.model, prompts=args.prompts, per_prompt=args.per_prompt,
                                frames=args.frames, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                log=print)
        record["machine"] = {**machine, "device": args.device}
        record["goals"] = {name: {"goal": goal, "measured": (record[name] or {}).get("fully_right"),
                                  "met": (record[name] or {}).get("fully_right", 0) >= goal}
                           for name, goal in GOALS.items()}
        print(format_table(record))
        print("goals:", json.dumps(record["goals"]))
        print("world of the model:", model_world(args.model)[0].to_dict())
    record["seconds"] = round(time.perf_counter() - start, 1)
    print(f"written to {save_record(record, args.out)} ({record['seconds']} s)")


if __name__ == "__main__":
    main()
