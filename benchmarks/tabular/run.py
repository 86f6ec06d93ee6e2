"""Side-by-side benchmark: noisecraft's joint diffusion vs CTGAN and TVAE (Xu et al. 2019, `ctgan` package).

Every method is fitted on the same training split with the same seeds, samples as many rows as the training split
has, and is scored by the same `noisecraft.tabular.evaluate` against the same holdout. Peers see the table as
their own examples do (ID/empty columns dropped, dates as numbers, categorical columns named as discrete); their
samples then pass through the same output stage as noisecraft's (clip to the training range, round like the input,
original dtypes and date formats), as SDV does for them by default (enforce_min_max_values, enforce_rounding).

Run inside benchmarks/.venv-tabular (bash benchmarks/tabular/setup.sh):
    python benchmarks/tabular/run.py --seeds 0 1 2
Results: one JSON line per (dataset, method, seed) in OUT/results.jsonl, and OUT/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from noisecraft.tabular import evaluate, fit, infer_schema
from noisecraft.tabular.schema import CATEGORICAL_KINDS
from noisecraft.tabular.transforms import TableCodec, column_as_seconds

from tables import DATASETS, load_split  # noqa: E402 (script directory)
from summarize import write_results_md  # noqa: E402

METHODS = ("noisecraft", "ctgan", "tvae")


NULL_SUFFIX = "__is_null"


def peer_table(train: pd.DataFrame, schema) -> tuple[pd.DataFrame, list[str]]:
    """The training table as SDV prepares it for CTGAN/TVAE: modelled columns only, datetimes as seconds, and
    numeric missing values mean-imputed with a discrete is-null column (RDT's missing_value_generation='from_column';
    CTGAN refuses NaN in continuous columns)."""
    columns, discrete = {}, [spec.name for spec in schema.columns if spec.kind in CATEGORICAL_KINDS]
    for spec in schema.columns:
        if not spec.modelled:
            continue
        values = train[spec.name]
        if spec.kind not in CATEGORICAL_KINDS:
            values = pd.Series(column_as_seconds(values, spec) if spec.kind == "datetime" else values.astype(float))
            if values.isna().any():
                columns[spec.name + NULL_SUFFIX] = values.isna()
                discrete.append(spec.name + NULL_SUFFIX)
                values = values.fillna(values.mean())
        columns[spec.name] = values
    return pd.DataFrame(columns), discrete


def restore_peer(sample: pd.DataFrame, schema, codec: TableCodec, seed: int) -> pd.DataFrame:
    """Peer output -> the input's format through noisecraft's own encode/decode (clip, round, dtypes, dates)."""
    sample = sample.copy()
    for name in [column for column in sample.columns if column.endswith(NULL_SUFFIX)]:
        original = name[: -len(NULL_SUFFIX)]
        sample[original] = sample[original].where(~sample.pop(name).astype(bool))
    for spec in schema.columns:
        if spec.kind == "datetime" and spec.datetime_format:
            stamps = pd.to_datetime(sample[spec.name], unit="s", errors="coerce")
            sample[spec.name] = stamps.dt.strftime(spec.datetime_format).where(stamps.notna(), np.nan)
    x_num, x_cat = codec.encode(sample)
    return codec.decode(x_num, x_cat, rng=np.random.default_rng(seed))


def fit_and_sample(method: str, train: pd.DataFrame, target: str, seed: int, args,
                   minutes: float | None) -> tuple[pd.DataFrame, float, float]:
    torch.manual_seed(seed)
    np.random.seed(seed)
    started = time.perf_counter()
    if method == "noisecraft":
        model = fit(train, target=target, steps=args.steps, minutes=minutes, seed=seed, progress=False)
        fitted = time.perf_counter()
        synthetic = model.sample(len(train), seed=seed)
        return synthetic, fitted - started, time.perf_counter() - fitted
    from ctgan import CTGAN, TVAE

    schema = infer_schema(train)
    table, discrete = peer_table(train, schema)
    peer = CTGAN(epochs=args.epochs, cuda=False) if method == "ctgan" else TVAE(epochs=args.epochs, cuda=False)
    peer.set_random_state(seed)
    peer.fit(table, discrete_columns=discrete)
    fitted = time.perf_counter()
    synthetic = restore_peer(peer.sample(len(train)), schema, TableCodec.fit(train, schema), seed)
    return synthetic, fitted - started, time.perf_counter() - fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=300, help="CTGAN / TVAE epochs (their default: 300)")
    parser.add_argument("--steps", type=int, default=None, help="noisecraft optimizer steps (default: its own)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="noisecraft training budget per fit (default: the slower peer's fit time on the same "
                             "dataset and seed when the peers ran first, else none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every method")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tabular"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # ctgan/rdt/sklearn deprecation chatter; data warnings are known here
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    for dataset in args.datasets:
        train, holdout, target = load_split(dataset)
        schema = infer_schema(train)
        for seed in args.seeds:
            peer_seconds = []
            for method in sorted(args.methods, key=lambda name: name == "noisecraft"):  # peers first
                # Equal-time comparison: noisecraft stops at its default step count or at the slower peer's time.
                minutes = args.minutes or ((0.9 * max(peer_seconds) - 2) / 60 if peer_seconds else None)  # setup
                synthetic, fit_seconds, sample_seconds = fit_and_sample(method, train, target, seed, args, minutes)
                if method != "noisecraft":
                    peer_seconds.append(fit_seconds)
                report = evaluate(train, synthetic, holdout=holdout, target=target, schema=schema, seed=seed)
                record = {"dataset": dataset, "method": method, "seed": seed, "train_rows": len(train),
                          "fit_seconds": fit_seconds, "sample_seconds": sample_seconds, "report": report}
                with results_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(f"{dataset:20s} {method:10s} seed {seed}: fit {fit_seconds:6.1f}s  "
                      f"TSTR {report['ml_efficiency']['tstr']:.3f}  "
                      f"shape err {report['fidelity']['column_shapes_error']:.3f}  "
                      f"trend err {report['fidelity']['column_pair_trends_error']:.3f}  "
                      f"detection {report['detection']['auc']:.3f}", flush=True)
    write_results_md(results_path, args.out / "RESULTS.md", command=vars(args))


if __name__ == "__main__":
    main()
