"""Where does tabular sampling spend its time? Network forward vs token draw vs decode, on a 20-column table.

Builds the synthetic 20-column table of ``memory_1m.py`` (10 continuous with missing values, 3 integer, a 2-, 30-
and 5,000-level categorical -- pooled to 200 tokens by ``max_categories`` -- a rating, a boolean, a date, an ID),
fits a model for a few optimizer steps (speed, not quality, is measured: the network's cost does not depend on its
weights), then samples ``--rows`` rows and times each phase by wrapping the network's forward, ``unmask_step`` and
the codec's decode. Usage::

    OMP_NUM_THREADS=1 python benchmarks/tabular/profile_sampling.py --rows 50000 --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_1m import make_table  # noqa: E402


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return timed


def profile(model, rows: int, steps: int, batch_size: int, seed: int = 0) -> dict:
    import noisecraft.tabular.diffusion as tabular_diffusion

    timer = Timer()
    net = model.denoiser.net
    original_forward = net.forward
    original_unmask = tabular_diffusion.unmask_step
    original_decode = model.codec.decode
    net.forward = timer.wrap("network_forward", original_forward)
    tabular_diffusion.unmask_step = timer.wrap("token_draw", original_unmask)
    model.codec.decode = timer.wrap("decode", original_decode)
    try:
        started = time.perf_counter()
        frame = model.sample(rows, steps=steps, seed=seed, batch_size=batch_size)
        total = time.perf_counter() - started
    finally:
        del net.forward, model.codec.decode
        tabular_diffusion.unmask_step = original_unmask
    other = total - sum(timer.seconds.values())
    return {"rows": len(frame), "sampler_steps": steps, "batch_size": batch_size, "total_s": round(total, 2),
            "rows_per_s": round(rows / total, 1),
            **{f"{k}_s": round(v, 2) for k, v in timer.seconds.items()}, "other_s": round(other, 2),
            **{f"{k}_share": round(v / total, 3) for k, v in timer.seconds.items()},
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000, help="rows to sample")
    parser.add_argument("--fit-rows", type=int, default=20_000)
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4, help="sampler steps")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tabular_profile"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"table_{args.fit_rows}.csv"
    if not csv.exists():
        make_table(csv, args.fit_rows)
    from noisecraft.tabular import fit, read_table

    model = fit(read_table(csv), steps=args.fit_steps, batch_size=1024, progress=False)
    print(json.dumps({"category_sizes": model.model_config["category_sizes"],
                      "num_numeric": model.model_config["num_numeric"]}))
    result = profile(model, args.rows, args.steps, args.batch_size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
