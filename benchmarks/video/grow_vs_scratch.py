"""Growing a video model from the text-to-image model against training the same network from scratch, at equal
compute (the same number of optimizer steps of the same batch on the same network: wall-clock time is no fair
measure on a shared machine), scored by the moving-shapes motion analyser.

    python benchmarks/video/grow_vs_scratch.py train --out runs/video_cmp --steps 40
    python benchmarks/video/grow_vs_scratch.py val-loss runs/video_cmp/grown runs/video_cmp/scratch \
        --out benchmarks/video/grow_vs_scratch_loss.json
    python benchmarks/video/grow_vs_scratch.py analyse runs/video_cmp/grown runs/video_cmp/scratch \
        --per-prompt 1 --steps 6 --out benchmarks/video/grow_vs_scratch.json

Both runs train every layer (a network from scratch has nothing to freeze) on clips plus still images, batch 2,
lr 5e-4, seed 0, the image model's noise distribution. ``analyse`` also scores any model folder (the shipped one:
``analyse noisecraft/assets/video_shapes``) on the seen prompts below: one per motion, and two pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SEEN_PROMPTS = ["a red circle moving right", "a blue square moving left", "a green circle moving up",
                "a yellow square moving down", "a small purple square growing", "a large red triangle shrinking",
                "a blue triangle standing still"]
PAIR_PROMPTS = ["a red circle moving right and a blue square moving left",
                "a green square moving up and a yellow circle standing still"]


def train(out: Path, steps: int) -> None:
    from noisecraft.nets.spacetime import image_unet_config
    from noisecraft.video.training import SHIPPED_IMAGE_MODEL, train_video

    unet = image_unet_config(SHIPPED_IMAGE_MODEL)
    for name in ("resolution", "in_channels", "out_channels", "num_classes", "context_dim"):
        unet.pop(name, None)
    image_diffusion = json.loads((SHIPPED_IMAGE_MODEL / "config.json").read_text())["model_config"]["diffusion"]
    common = {"steps": steps, "batch_size": 2, "lr": 5e-4, "seed": 0,
              "train": {"log_every": 5, "checkpoint_every": 20, "warmup_steps": 10}}
    scratch = {"grow_from": None, "net": unet, "text_encoder": "minilm",
               "diffusion": {k: image_diffusion[k] for k in ("p_mean", "p_std", "min_snr_gamma", "weighting")}}
    for name, extra in (("grown", {}), ("scratch", scratch)):
        start = time.time()
        result = train_video({"out_dir": str(out / name), **common, **extra}, progress=False)
        print(f"{name}: {result.step} steps, loss {result.loss:.4f}, {time.time() - start:.0f} s", flush=True)


def analyse(model: Path, per_prompt: int, steps: int, guidance: float, prompts: list[str],
            gif: Path | None = None) -> dict:
    """Fraction of clips the analyser finds fully right (objects in every frame, motion right), per prompt; with
    ``gif``, the first clip of every prompt side by side in one enlarged GIF."""
    import noisecraft
    from noisecraft.video.io import analyse_clips, sheet_gif

    pipeline = noisecraft.load(model)
    rows = {}
    firsts = []
    for prompt in prompts:
        generation = pipeline.generate({"prompt": prompt, "batch": per_prompt, "steps": steps, "guidance": guidance},
                                       seed=0)
        verdicts = analyse_clips(generation.items, prompt)
        firsts.append(generation.items[0])
        frames = len(generation.items[0])
        rows[prompt] = {"right": sum(v["matches_prompt"] for v in verdicts), "clips": per_prompt,
                        "whole_tracks": sum(bool(v["objects"]) and all(o["frames_seen"] == frames for o in v["objects"])
                                            for v in verdicts),
                        "measured": [[f"{o['colour']} {o['shape']} {o['motion']} ({o['frames_seen']} frames)"
                                      for o in v["objects"]] for v in verdicts]}
        print(f"{model.name}: {prompt!r}: {rows[prompt]['right']}/{per_prompt} {rows[prompt]['measured']}", flush=True)
    if gif is not None:
        gif.parent.mkdir(parents=True, exist_ok=True)
        gif.write_bytes(sheet_gif(firsts, {"model": str(model), "prompts": prompts, "seed": 0, "steps": steps,
                                           "guidance": guidance}))
    right = sum(r["right"] for r in rows.values())
    total = sum(r["clips"] for r in rows.values())
    whole = sum(r["whole_tracks"] for r in rows.values())
    return {"model": str(model), "fraction_right": right / total, "right": right, "clips": total,
            "clips_tracked_in_every_frame": whole, "steps": steps, "guidance": guidance,
            "per_prompt": per_prompt, "prompts": rows}


VAL_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


@torch.no_grad()
def validation_loss(model: Path, clips: int = 16, seed: int = 10_000) -> dict:
    """EDM-weighted denoising loss (EDM eq. 2, the training objective without condition dropout) on ``clips`` clips
    of the world that no run trained on (data seed ``seed``), at fixed sigmas with fixed noise: the same numbers for
    any model, so equal-compute runs compare directly (lower is better)."""
    import noisecraft
    from noisecraft.diffusion.loss import denoising_loss
    from noisecraft.video.world import MovingShapesDataset

    pipeline = noisecraft.load(model)
    data = MovingShapesDataset(clips, seed=seed)
    x0 = torch.stack([data[i]["video"] for i in range(clips)])
    context, mask = pipeline.model.encode_text([data[i]["caption"] for i in range(clips)])
    generator = torch.Generator().manual_seed(0)
    per_sigma = {}
    for sigma in VAL_SIGMAS:
        noise = torch.randn(x0.shape, generator=generator)
        losses = denoising_loss(pipeline.model, x0, torch.full((clips,), sigma), "edm", noise=noise,
                                context=context, context_mask=mask)
        per_sigma[str(sigma)] = round(float(losses.mean()), 5)
        print(f"{model.name}: sigma {sigma}: {per_sigma[str(sigma)]}", flush=True)
    return {"model": str(model), "clips": clips, "data_seed": seed, "per_sigma": per_sigma,
            "mean": round(sum(per_sigma.values()) / len(per_sigma), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=40)
    v = sub.add_parser("val-loss")
    v.add_argument("models", type=Path, nargs="+")
    v.add_argument("--out", type=Path)
    a = sub.add_parser("analyse")
    a.add_argument("models", type=Path, nargs="+")
    a.add_argument("--per-prompt", type=int, default=2)
    a.add_argument("--steps", type=int, default=12)
    a.add_argument("--guidance", type=float, default=3.0)
    a.add_argument("--pairs", action="store_true", help="also the two-object prompts")
    a.add_argument("--out", type=Path)
    a.add_argument("--gif", type=Path, help="a GIF of each prompt's first clip, side by side (first model only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "train":
        train(args.out, args.steps)
        return
    if args.command == "val-loss":
        results = [validation_loss(m) for m in args.models]
        for r in results:
            print(f"{r['model']}: validation loss {r['mean']} {r['per_sigma']}")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        return
    prompts = SEEN_PROMPTS + (PAIR_PROMPTS if args.pairs else [])
    results = [analyse(m, args.per_prompt, args.steps, args.guidance, prompts, args.gif if i == 0 else None)
               for i, m in enumerate(args.models)]
    for r in results:
        print(f"{r['model']}: {r['right']}/{r['clips']} clips fully right ({r['fraction_right']:.2f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
