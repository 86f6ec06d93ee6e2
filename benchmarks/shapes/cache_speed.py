"""Training speed with and without ``cache_on_device``: a tiny text-to-image run on the shapes world.

    python benchmarks/shapes/cache_speed.py [--steps 60] [--batch-size 64]   # on the GPU when there is one

Runs the same training twice per setting (alternating, to spread machine noise) and prints the mean steps/s of the
log windows after the first (which holds start-up), plus the time spent building the cache.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from noisecraft.api import train


def run(out: Path, *, cached: bool, steps: int, batch_size: int) -> tuple[float, float, float | None]:
    shutil.rmtree(out, ignore_errors=True)
    config = {"data": "shapes", "resolution": 32, "num_examples": 4096, "preset": "tiny", "out_dir": str(out),
              "unet": {"attention_resolutions": [16]},
              "text_encoder": {"name": "learned", "dim": 32, "layers": 1, "heads": 2},
              "train": {"steps": steps, "batch_size": batch_size, "checkpoint_every": 0, "sample_every": 0,
                        "log_every": max(1, steps // 3), "cache_on_device": cached}}
    start = time.perf_counter()
    train(config, progress=False)
    total = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["it_per_s"] for r in records if r["kind"] == "train"][1:]
    cache_seconds = next((r["seconds"] for r in records if r["kind"] == "data_cache"), None)
    return sum(rates) / len(rates), total, cache_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        for cached in (False, True, False, True):
            rate, total, cache_seconds = run(Path(folder) / "run", cached=cached, steps=args.steps,
                                             batch_size=args.batch_size)
            cache = f"; cache built in {cache_seconds:.1f} s" if cache_seconds is not None else ""
            print(f"cache_on_device={cached}: {rate:.2f} steps/s; {total:.1f} s in all{cache}", flush=True)


if __name__ == "__main__":
    main()
