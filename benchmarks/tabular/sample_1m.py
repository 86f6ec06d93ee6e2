"""Fit + sample + write a 1,000,000-row x 20-column table, timed per phase (the issue's "tables at a million rows").

The table is ``memory_1m.py``'s synthetic one (an ID, 10 continuous columns with 5% missing, 3 integer, a 2-, 30-
and 5,000-level categorical -- pooled by ``max_categories`` to 200 tokens -- a 1-5 rating, a boolean, a date). In a
fresh process (so ru_maxrss counts only this work): read the CSV, ``fit`` for ``--minutes`` on ``--fit-rows`` rows,
sample ``--rows`` rows with ``--sampler``/``--steps`` in batches of ``--batch-size``, write them as CSV. Reported per
phase: seconds, peak RSS (resource.getrusage ru_maxrss); for sampling also rows/s and the share of its time spent
inside the network's forward (timed by wrapping ``TabularNet.forward``), and the token draws and decode.

With ``--peers`` (needs ``bash benchmarks/tabular/setup_peers_light.sh``, which puts ``ctgan`` next to the project's
torch in ``benchmarks/.venv-ctgan``), CTGAN and TVAE (Xu et al. 2019) are fitted for ``--peer-epochs`` on
``--peer-fit-rows`` rows (their sampling cost does not depend on how long they trained) and their ``sample(n)`` is
timed on ``--peer-rows`` rows, in the same run and under the same thread count.

Usage (repo root; the machine is shared, so run it with few threads and in the background)::

    OMP_NUM_THREADS=2 nohup .venv/bin/python benchmarks/tabular/sample_1m.py --minutes 4 --steps 4 --peers &
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(ROOT)]

from memory_1m import make_table  # noqa: E402

PEER_VENV = ROOT / "benchmarks" / ".venv-ctgan" / "bin" / "python"


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used: less sensitive than wall time to a machine
    shared with other jobs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)  # kilobytes on Linux


def run_noisecraft(args) -> dict:
    import torch

    import noisecraft.tabular.diffusion as tabular_diffusion
    from noisecraft.tabular import fit, read_table, write_table

    torch.set_num_threads(args.threads)
    phases: dict = {}
    started, cpu = time.perf_counter(), cpu_s()
    frame = read_table(args.csv)
    if args.fit_rows < len(frame):
        frame = frame.iloc[: args.fit_rows]
    phases["read"] = {"seconds": round(time.perf_counter() - started, 2), "cpu_s": round(cpu_s() - cpu, 1),
                      "rows": len(frame), "peak_rss_gib": peak_gib()}
    started, cpu = time.perf_counter(), cpu_s()
    model = fit(frame, out_dir=args.out / "model", minutes=args.minutes, progress=False, seed=0)
    phases["fit"] = {"seconds": round(time.perf_counter() - started, 2), "cpu_s": round(cpu_s() - cpu, 1), "steps": model.model_config["steps_done"],
                     "batch_size": model.model_config.get("train", {}).get("batch_size"),
                     "peak_rss_gib": peak_gib()}
    del frame

    timed = {"network_forward": 0.0, "token_draw": 0.0, "decode": 0.0}

    def timing(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timed[name] += time.perf_counter() - t0
        return wrapper

    net = model.denoiser.net
    net.forward = timing("network_forward", net.forward)
    tabular_diffusion.unmask_step = timing("token_draw", tabular_diffusion.unmask_step)
    model.codec.decode = timing("decode", model.codec.decode)
    started, cpu = time.perf_counter(), cpu_s()
    synthetic = model.sample(args.rows, steps=args.steps, sampler=args.sampler, seed=0, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    phases["sample"] = {"seconds": round(seconds, 2), "cpu_s": round(cpu_s() - cpu, 1), "rows": len(synthetic), "rows_per_s": round(len(synthetic)
                        / seconds, 1), "sampler": args.sampler, "sampler_steps": args.steps,
                        "batch_size": args.batch_size,
                        **{f"{name}_s": round(value, 2) for name, value in timed.items()},
                        "network_forward_share": round(timed["network_forward"] / seconds, 3),
                        "peak_rss_gib": peak_gib()}
    started, cpu = time.perf_counter(), cpu_s()
    write_table(synthetic, args.out / "synthetic_1m.csv")
    phases["write"] = {"seconds": round(time.perf_counter() - started, 2), "cpu_s": round(cpu_s() - cpu, 1),
                       "peak_rss_gib": peak_gib()}
    phases["total_fit_sample_write_s"] = round(sum(phases[k]["seconds"] for k in ("fit", "sample", "write")), 2)
    phases["threads"] = args.threads
    return phases


def run_peers(args) -> dict:
    import warnings

    import numpy as np
    import pandas as pd
    import torch
    from ctgan import CTGAN, TVAE

    from noisecraft.tabular import read_table
    from noisecraft.tabular.schema import infer_schema

    from run import peer_table

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    frame = read_table(args.csv).iloc[: args.peer_fit_rows]
    schema = infer_schema(frame)
    table, discrete = peer_table(frame, schema)
    for name in discrete:  # pool wide columns to 200 levels, as noisecraft's max_categories does
        counts = table[name].value_counts()
        if len(counts) > 200:
            table[name] = table[name].where(table[name].isin(counts.index[:199]), "__other__")
    results = {"fit_rows": len(table), "epochs": args.peer_epochs, "sample_rows": args.peer_rows}
    for name, cls in (("ctgan", CTGAN), ("tvae", TVAE)):
        np.random.seed(0)
        peer = cls(epochs=args.peer_epochs, cuda=False)
        peer.set_random_state(0)
        started = time.perf_counter()
        peer.fit(table, discrete_columns=discrete)
        fitted = time.perf_counter() - started
        started, cpu = time.perf_counter(), cpu_s()
        sample = peer.sample(args.peer_rows)
        seconds = time.perf_counter() - started
        results[name] = {"fit_s": round(fitted, 2), "sample_s": round(seconds, 2), "sample_cpu_s": round(cpu_s() - cpu, 1),
                         "rows_per_s": round(len(sample) / seconds, 1), "peak_rss_gib": peak_gib()}
        del sample, peer
    results["threads"] = args.threads
    results["note"] = ("ctgan sample() output (its own inverse transforms), not passed through noisecraft's decode; "
                       "date as seconds, numeric NaN mean-imputed + is-null column, cat_big pooled to 200 levels")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table and of the sample")
    parser.add_argument("--fit-rows", type=int, default=None, help="fit on the first N rows (default: all)")
    parser.add_argument("--minutes", type=float, default=4.0, help="noisecraft training budget")
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--steps", type=int, default=4, help="sampler steps (the model default is 32)")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers", action="store_true", help="also time CTGAN and TVAE sampling")
    parser.add_argument("--peer-fit-rows", type=int, default=20_000)
    parser.add_argument("--peer-epochs", type=int, default=1)
    parser.add_argument("--peer-rows", type=int, default=None, help="rows CTGAN/TVAE sample (default: --rows)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "tabular_1m")
    parser.add_argument("--child", choices=("noisecraft", "peers"), help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.fit_rows = args.fit_rows or args.rows
    args.peer_rows = args.peer_rows or args.rows
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        result = run_noisecraft(args) if args.child == "noisecraft" else run_peers(args)
        print(json.dumps(result))
        return
    args.csv = args.out / f"table_{args.rows}.csv"
    if not args.csv.exists():
        make_table(args.csv, args.rows)
    passed = [a for a in sys.argv[1:] if a != "--peers"] + ["--csv", str(args.csv)]
    report = {"command": " ".join(["python", "benchmarks/tabular/sample_1m.py", *sys.argv[1:]])}

    def child(python: str, kind: str) -> dict:
        done = subprocess.run([python, __file__, *passed, "--child", kind], capture_output=True, text=True)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
        return json.loads(done.stdout.strip().splitlines()[-1])

    report["noisecraft"] = child(sys.executable, "noisecraft")
    print(json.dumps(report["noisecraft"], indent=1), flush=True)
    if args.peers:
        if PEER_VENV.exists():
            report["peers"] = child(str(PEER_VENV), "peers")
        else:
            report["peers"] = {"error": "no peer environment: run bash benchmarks/tabular/setup_peers_light.sh"}
        print(json.dumps(report["peers"], indent=1), flush=True)
    (args.out / "sample_1m.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
