"""Turn results.jsonl into the RESULTS.md table: mean +- std over seeds per (dataset, method)."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import pandas as pd

COLUMNS = {  # column title -> (section, key, better)
    "TSTR": ("ml_efficiency", "tstr", "higher"),
    "TRTR": ("ml_efficiency", "trtr", "reference"),
    "shape err": ("fidelity", "column_shapes_error", "lower"),
    "trend err": ("fidelity", "column_pair_trends_error", "lower"),
    "detection AUC": ("detection", "auc", "closer to 0.5"),
    "closer-to-train": ("privacy", "closer_to_train_share", "closer to 0.5"),
    "copy share": ("privacy", "exact_copy_share", "as holdout"),
    "holdout copy share": ("privacy", "holdout_exact_copy_share", "reference"),
}


def load(results_path: Path) -> pd.DataFrame:
    rows = []
    for line in results_path.read_text().splitlines():
        record = json.loads(line)
        row = {key: record[key] for key in ("dataset", "method", "seed", "fit_seconds")}
        row["metric"] = record["report"]["ml_efficiency"]["metric"]
        for title, (section, key, _) in COLUMNS.items():
            row[title] = record["report"][section].get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def table(frame: pd.DataFrame) -> str:
    titles = ["fit s", *COLUMNS]
    lines = ["| dataset (TSTR metric) | method | seeds | " + " | ".join(titles) + " |",
             "|---|---|---|" + "---|" * len(titles)]
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        cells = []
        for title in titles:
            values = group["fit_seconds" if title == "fit s" else title].astype(float)
            cells.append(f"{values.mean():.3f} ± {values.std(ddof=0):.3f}" if title != "fit s"
                         else f"{values.mean():.0f}")
        metric = group["metric"].iloc[0]
        lines.append(f"| {dataset} ({metric}) | {method} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results_md(results_path: Path, out_path: Path, *, command: dict) -> None:
    frame = load(results_path)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}, CPU only"
    text = [
        "# Tabular benchmark: noisecraft vs CTGAN vs TVAE",
        "",
        f"Date: {date.today().isoformat()}. Machine: {machine}. Command: `python {' '.join(sys.argv)}`",
        f"Settings: {json.dumps({k: str(v) for k, v in command.items()})}",
        "",
        "Mean ± std over seeds. TSTR: train on synthetic, test on the real holdout (mean over gradient boosting, "
        "random forest and a linear model; ROC AUC for binary targets, R² for regression), TRTR the same trained "
        "on the real training split. shape / trend err: 1 - SDMetrics Column Shapes / Column Pair Trends. "
        "detection AUC: the stronger of logistic regression and gradient boosting telling real from synthetic "
        "(0.5 ideal). closer-to-train: share of synthetic rows nearer to a training row than to a holdout row "
        "(0.5 ideal). copy share: synthetic rows identical to a training row; holdout copy share: the same for real "
        "holdout rows (what fresh data from the same distribution gives). fit s: training wall-clock seconds "
        "(noisecraft stops at its default step count or when its training loop has run 90% of the slower peer's "
        "fit time on the same seed, less 2 s for setup).",
        "",
        table(frame),
        "",
    ]
    out_path.write_text("\n".join(text))


if __name__ == "__main__":
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out/tabular/results.jsonl")
    write_results_md(results, results.with_name("RESULTS.md"), command={"results": str(results)})
