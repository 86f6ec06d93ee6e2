"""Peak memory of fitting and sampling a 1,000,000-row x 20-column table (the issue's 24 GiB budget).

Writes a synthetic mixed-type CSV (10 continuous columns with missing values, 3 integer, 4 categorical including one
with 5,000 levels, 1 boolean, 1 date, 1 ID), then in a fresh process: reads it, fits for --minutes, samples
--rows rows with --steps sampler steps in batches, writes them, and reports the peak resident set size
(ru_maxrss) after each stage. Usage: python benchmarks/tabular/memory_1m.py [--minutes 1] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_table(path: Path, num_rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal(num_rows)
    columns = {"row_id": np.arange(num_rows)}
    for j in range(10):
        values = np.round(latent * (j + 1) + rng.standard_normal(num_rows), 3)
        values[rng.random(num_rows) < 0.05] = np.nan
        columns[f"num_{j}"] = values
    for j in range(3):
        columns[f"int_{j}"] = rng.poisson(50 + 10 * j + 5 * latent.clip(-3, 3), num_rows)
    columns["cat_small"] = np.where(latent > 0, "high", "low")
    columns["cat_mid"] = rng.choice([f"c{k}" for k in range(30)], num_rows)
    columns["cat_big"] = rng.choice([f"zip{k:05d}" for k in range(5000)], num_rows)
    columns["cat_rating"] = rng.integers(1, 6, num_rows)
    columns["flag"] = rng.random(num_rows) < 0.3
    columns["date"] = (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, num_rows), unit="D")
                       ).strftime("%Y-%m-%d")
    pd.DataFrame(columns).to_csv(path, index=False)


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


def run(csv: Path, model_dir: Path, minutes: float, rows: int, steps: int) -> dict:
    import torch

    from noisecraft.tabular import fit, read_table, write_table

    torch.set_num_threads(1)  # the benchmark machine is shared; memory, not speed, is measured here
    stages = {}
    started = time.perf_counter()
    frame = read_table(csv)
    stages["read"] = {"seconds": time.perf_counter() - started, "peak_rss_gib": peak_gib()}
    started = time.perf_counter()
    model = fit(frame, out_dir=model_dir, minutes=minutes, progress=False)
    stages["fit"] = {"seconds": time.perf_counter() - started, "peak_rss_gib": peak_gib(),
                     "steps": model.model_config["steps_done"]}
    del frame
    started = time.perf_counter()
    synthetic = model.sample(rows, steps=steps, seed=0)
    write_table(synthetic, model_dir / "synthetic.csv")
    stages["sample"] = {"seconds": time.perf_counter() - started, "peak_rss_gib": peak_gib(), "rows": len(synthetic),
                        "sampler_steps": steps}
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table and of the sample")
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget")
    parser.add_argument("--steps", type=int, default=2, help="sampler steps (few: this measures memory, not quality)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tabular_1m"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "table_1m.csv"
    if args.child:
        print(json.dumps(run(csv, args.out / "model", args.minutes, args.rows, args.steps)))
        return
    if not csv.exists():
        make_table(csv, args.rows)
    # A fresh process, so the peak RSS counts only reading, fitting and sampling (not making the table).
    result = subprocess.run([sys.executable, __file__, "--child", "--rows", str(args.rows), "--minutes",
                             str(args.minutes), "--steps", str(args.steps), "--out", str(args.out)],
                            check=True, capture_output=True, text=True)
    stages = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(stages, indent=2))
    (args.out / "memory.json").write_text(json.dumps(stages, indent=2))


if __name__ == "__main__":
    main()
