"""Evaluation inputs and context: target checks, delimiters and encodings on the CLI, the real-vs-real reference
and the per-pair breakdown of the pair-trend error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from noisecraft.cli import main as cli_main
from noisecraft.tabular.evaluate import evaluate
from noisecraft.tabular.report import pair_rows, print_report, summary_rows


def coded_table(num_rows: int = 160, seed: int = 0) -> pd.DataFrame:
    """A small table with one 60-level column: its pairs are noisy even between two halves of real data."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], num_rows)
    return pd.DataFrame({
        "group": group,
        "x": np.round(np.where(group == "a", -2.0, 2.0) + rng.standard_normal(num_rows), 3),
        "size": rng.choice(["S", "M", "L"], num_rows),
        "code": rng.choice([f"c{i}" for i in range(60)], num_rows),
    })


def run_cli(*args) -> int:
    try:
        cli_main(list(map(str, args)))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_unknown_target_is_rejected_with_or_without_holdout():
    table = coded_table(40)
    for holdout in (None, table):
        with pytest.raises(ValueError, match="target 'NOSUCH' is not a column of the real table; columns are "
                                             "\\['group', 'x', 'size', 'code'\\]"):
            evaluate(table, table, holdout=holdout, target="NOSUCH")


def test_reference_and_worst_pairs_put_scores_in_context(capsys):
    table = coded_table()
    synthetic = table.sample(frac=1.0, random_state=1).reset_index(drop=True)
    synthetic["code"] = synthetic["code"].to_numpy()[::-1]  # break code's links to the other columns
    report = evaluate(table, synthetic)
    reference = report["reference"]
    assert reference["rows"] == 80 and 0 <= reference["detection"]["auc"] <= 1
    assert set(reference["fidelity"]) >= {"column_shapes_error", "column_pair_trends_error", "worst_pairs"}
    assert "dcr_train_median" in reference["privacy"]
    # The many-level column dominates the pair-trend error, for real data as much as for synthetic data.
    assert next(iter(reference["fidelity"]["pair_trends_error_by_column"])) == "code"
    worst = report["fidelity"]["worst_pairs"][0]
    assert "code" in worst["columns"] and worst["reference_error"] is not None
    rows = {row[0]: row for row in summary_rows(report)}
    assert rows["Column pair trends error"][2] == f"{reference['fidelity']['column_pair_trends_error']:.4f}"
    assert any("code" in row[0] for row in pair_rows(report))
    print_report(report)
    out = capsys.readouterr().out
    assert "real/real" in out and "Worst column pairs" in out and ", code" in out


def test_cli_evaluate_takes_sep_and_encoding_and_checks_the_target(tmp_path, capsys):
    table = coded_table(60)
    table["city"] = ["Malmö", "Zürich", "Oslo"] * 20
    table.to_csv(tmp_path / "real.csv", sep=";", index=False, encoding="latin-1")
    table.sample(frac=1.0, random_state=0).to_csv(tmp_path / "synthetic.csv", index=False)  # UTF-8, as sampled
    real, synthetic = tmp_path / "real.csv", tmp_path / "synthetic.csv"
    assert run_cli("tabular", "evaluate", real, synthetic, "--target", "NOSUCH", "--encoding", "latin-1") == 2
    err = capsys.readouterr().err
    assert "target 'NOSUCH' is not a column of the real table" in err and "Traceback" not in err
    assert run_cli("tabular", "evaluate", real, synthetic, "--sep", ";", "--encoding", "latin-1",
                   "--target", "group", "--no-reference") == 0
    assert "Column shapes error" in capsys.readouterr().out
    report = json.loads((tmp_path / "synthetic_report.json").read_text())
    assert report["fidelity"]["per_column_shape_error"]["city"] == pytest.approx(0.0)  # labels decoded alike
    assert "reference" not in report and report["fidelity"]["worst_pairs"]


def test_cli_fit_detects_or_takes_the_delimiter(tmp_path, capsys):
    path = tmp_path / "semi.csv"
    coded_table(40).drop(columns=["code"]).to_csv(path, sep=";", index=False)
    assert run_cli("tabular", "fit", path, "-o", tmp_path / "m", "--sep", ",") == 2
    err = capsys.readouterr().err
    assert "one column named 'group;x;size', which contains ';'" in err and "--sep ';'" in err
    assert run_cli("tabular", "fit", path, "-o", tmp_path / "m", "--steps", 2, "--batch-size", 8) == 0
    assert f"read {path} as ';'-separated (detected)" in capsys.readouterr().err
