"""Presenting an evaluation: a printed table, a JSON file and a PNG of per-column distributions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import CATEGORICAL_KINDS, NUMERIC_KINDS, Schema
from .transforms import column_as_float

# (section, key, label, ideal) rows of the printed summary.
SUMMARY_ROWS = [
    ("ml_efficiency", "tstr", "TSTR (train synthetic, test real)", "= TRTR"),
    ("ml_efficiency", "trtr", "TRTR (train real, test real)", "reference"),
    ("fidelity", "column_shapes_error", "Column shapes error", "0"),
    ("fidelity", "column_pair_trends_error", "Column pair trends error", "0"),
    ("detection", "logistic_auc", "Detection AUC, logistic", "0.5"),
    ("detection", "gradient_boosting_auc", "Detection AUC, gradient boosting", "0.5"),
    ("privacy", "closer_to_train_share", "Share closer to train than holdout", "0.5"),
    ("privacy", "dcr_train_median", "DCR to train (median)", "not 0"),
    ("privacy", "exact_copies", "Exact copies of training rows", "0"),
]


def _number(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(metric, value, real-vs-real reference, ideal) per reported score; the reference column is what one half
    of the real table scores against the other, so a score can be judged against what real data achieves."""
    reference = report.get("reference", {})
    rows = []
    for section, key, label, ideal in SUMMARY_ROWS:
        value = report.get(section, {}).get(key)
        if value is None:
            continue
        if section == "ml_efficiency":
            label = f"{label}, {report['ml_efficiency']['metric']}"
        rows.append((label, _number(value), _number(reference.get(section, {}).get(key)), ideal))
    return rows


def pair_rows(report: dict, limit: int = 5) -> list[tuple[str, str, str, str]]:
    """(column pair, metric, error, real-vs-real error) of the worst column pairs of the pair-trend score."""
    return [
        (", ".join(pair["columns"]), pair["metric"].replace("Similarity", ""), _number(pair["error"]),
         _number(pair.get("reference_error")))
        for pair in report.get("fidelity", {}).get("worst_pairs", [])[:limit]
    ]


def print_report(report: dict) -> None:
    """The summary table (with the real/real column when the report has a reference), the worst column pairs of
    the pair-trend score, and one line per skipped part."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    reference = report.get("reference", {})
    with_reference = "rows" in reference
    table = Table(title=f"Synthetic data report ({report['rows']['synthetic']} synthetic rows)")
    headers = ("metric", "value", "real/real", "ideal") if with_reference else ("metric", "value", "ideal")
    for header in headers:
        table.add_column(header)
    for label, value, reference_value, ideal in summary_rows(report):
        table.add_row(*((label, value, reference_value, ideal) if with_reference else (label, value, ideal)))
    console.print(table)
    pairs = pair_rows(report)
    if pairs:
        worst = Table(title="Worst column pairs (pair-trend error)")
        for header in ("columns", "metric", "error", "real/real")[: 4 if with_reference else 3]:
            worst.add_column(header)
        for row in pairs:
            worst.add_row(*row[: 4 if with_reference else 3])
        console.print(worst)
    if with_reference:
        console.print(f"real/real: one half of the real table ({reference['rows']} rows) scored against the other.")
    elif "skipped" in reference:
        console.print(f"real/real reference skipped: {reference['skipped']}")
    if "skipped" in report.get("ml_efficiency", {}):
        console.print(f"TSTR / TRTR skipped: {report['ml_efficiency']['skipped']}")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(report), indent=2))
    return path


def plot_columns(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, path: str | Path,
                 *, max_levels: int = 15) -> Path:
    """One panel per modelled column: overlaid density histograms (numbers, datetimes) or side-by-side bars of
    level frequencies (categories, the ``max_levels`` most common real levels plus missing)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    columns = [c for c in schema.columns if c.kind in NUMERIC_KINDS + CATEGORICAL_KINDS]
    num_cols = min(4, len(columns))
    num_rows = math.ceil(len(columns) / num_cols)
    figure, axes = plt.subplots(num_rows, num_cols, figsize=(4 * num_cols, 3 * num_rows), squeeze=False)
    for axis, column in zip(axes.flat, columns):
        if column.kind in NUMERIC_KINDS:
            real_values = column_as_float(real[column.name], column)
            synthetic_values = column_as_float(synthetic[column.name], column)
            finite = np.concatenate([real_values, synthetic_values])
            finite = finite[np.isfinite(finite)]
            bins = np.histogram_bin_edges(finite, bins=30) if len(finite) else 10
            for values, label in ((real_values, "real"), (synthetic_values, "synthetic")):
                axis.hist(values[np.isfinite(values)], bins=bins, density=True, alpha=0.5, label=label)
        else:
            real_share = real[column.name].astype(str).value_counts(normalize=True)
            synthetic_share = synthetic[column.name].astype(str).value_counts(normalize=True)
            levels = list(real_share.index[:max_levels])
            positions = np.arange(len(levels))
            axis.bar(positions - 0.2, real_share.reindex(levels).fillna(0), width=0.4, label="real")
            axis.bar(positions + 0.2, synthetic_share.reindex(levels).fillna(0), width=0.4, label="synthetic")
            axis.set_xticks(positions, [level[:12] for level in levels], rotation=45, ha="right", fontsize=7)
        axis.set_title(f"{column.name} ({column.kind})", fontsize=9)
    for axis in list(axes.flat)[len(columns):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
