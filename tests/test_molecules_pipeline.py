"""`noisecraft molecules fit | sample | evaluate` end to end on tiny data (tiny network, a few steps), the pipeline's
request checks, and property conditioning moving a property the requested way.

The commands run through the molecules sub-app (what `noisecraft molecules ...` mounts); `main` prints the same
errors as one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")

from typer.testing import CliRunner  # noqa: E402

import noisecraft  # noqa: E402
from noisecraft.molecules.cli import app  # noqa: E402
from noisecraft.molecules.data import MoleculeSet  # noqa: E402
from noisecraft.molecules.training import TINY_SMILES, check_config, train_on_molecules  # noqa: E402
from noisecraft.protocol import ParameterError  # noqa: E402
from noisecraft.training.checkpoint import read_config  # noqa: E402

FIT = ["--preset", "tiny", "--steps", "3", "--batch-size", "16"]


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _error(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, (ValueError, FileNotFoundError)), (result.output, result.exception)
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.smi"
    path.write_text("smiles\n" + "\n".join(TINY_SMILES[:60]) + "\nC1CC\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mol"
    output = _run("fit", str(data), "-o", str(out), "--properties", "qed,logp", *FIT)
    assert "60 molecules" in output and "trained 3 steps" in output
    return out


def test_fit_records_tokenizer_properties_and_data(model, data):
    spec = read_config(model)["model_config"]
    assert spec["kind"] == "molecules" and (model / "tokenizer.json").is_file()
    extra = spec["extra"]
    assert extra["representation"] == "smiles" and extra["properties"]["names"] == ["qed", "logp"]
    assert extra["data"]["source"] == str(data) and extra["data"]["skipped"] == 1
    assert spec["net"]["cond_dim"] == 4 and spec["max_length"] >= max(len(s) for s in TINY_SMILES[:60]) // 2


def test_sample_writes_csv_json_png_and_evaluate_reads_them(model, data, tmp_path):
    out = tmp_path / "gen.csv"
    output = _run("sample", str(model), "-n", "4", "-o", str(out), "--target", "qed=0.7", "--guidance", "2",
                  "--steps", "4", "--seed", "3")
    assert "wrote 4 molecules" in output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {"smiles", "reason", "qed", "logp", "sa", "mw", "target_qed", "pains", "brenk",
                                "generated"} <= set(rows[0])
    assert all(row["smiles"] or row["reason"] for row in rows)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["targets"] == ["qed=0.7"] and record["seed"] == 3 and record["guidance"] == 2
    report_path = tmp_path / "report.json"
    _run("evaluate", str(out), "--train", str(data), "--no-fcd", "-o", str(report_path))
    report = json.loads(report_path.read_text())
    assert report["samples"] == 4 and "validity" in report and "quality" in report["targeting"]
    assert report["targeting"]["qed"]["targeted"] == 4


def test_png_grid_of_valid_molecules():
    from noisecraft.molecules.pipeline import grid_png

    png = grid_png([{"smiles": "CCO", "qed": 0.4}, {"smiles": ""}, {"smiles": "c1ccccc1", "qed": 0.44}], ["qed"])
    assert png.startswith(b"\x89PNG") and png == grid_png([{"smiles": "CCO", "qed": 0.4}, {"smiles": "c1ccccc1",
                                                                                           "qed": 0.44}], ["qed"])
    assert grid_png([{"smiles": ""}], ["qed"]) is None


def test_bad_requests_are_one_line_errors_naming_the_problem(model, data, tmp_path):
    out = str(tmp_path / "x.csv")
    assert "'n'" in _error("sample", str(model), "-n", "0", "-o", out)
    assert "not NAME=VALUE" in _error("sample", str(model), "-o", out, "--target", "qed")
    assert "takes targets for: qed, logp" in _error("sample", str(model), "-o", out, "--target", "sa=3")
    assert "'contains'" in _error("sample", str(model), "-o", out, "--contains", "C1((")
    assert "give at least one target" in _error("sample", str(model), "-o", out, "--guidance", "3")
    assert "unknown property 'potency'; known: qed, logp, sa" in _error(
        "fit", str(data), "-o", str(tmp_path / "m"), "--properties", "potency", *FIT)
    empty = tmp_path / "empty.smi"
    empty.write_text("")
    assert "empty" in _error("fit", str(empty), "-o", str(tmp_path / "m"), *FIT)
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    assert "has no column 'smi'" in _error("fit", str(table), "--column", "smi", "-o", str(tmp_path / "m"), *FIT)
    assert "has no SMILES column" in _error("fit", str(table), "-o", str(tmp_path / "m"), *FIT)


def test_pipeline_warns_outside_the_training_range_and_reports_contains(model):
    pipeline = noisecraft.load(model)
    low, high = pipeline.normalizer.range("qed")
    with pytest.warns(UserWarning, match=f"outside the training range of qed \\[{low:.4g}, {high:.4g}\\]"):
        generation = pipeline.generate({"n": 2, "steps": 2, "targets": ["qed=1.5"]}, seed=0)
    assert generation.parameters["warnings"][0].startswith("target qed=1.5")
    with pytest.warns(UserWarning, match="contain"):
        generation = pipeline.generate({"n": 2, "steps": 2, "contains": "[Xe]", "tries": 2}, seed=0)
    assert generation.items == [] and generation.parameters["contains_report"] == {
        "drawn": 4, "tries": 2, "matched": 0, "requested": 2}
    with pytest.raises(ParameterError, match="'targets'.*'qed' is targeted twice"):
        pipeline.generate({"targets": ["qed=0.5", "qed=0.6"]})


def test_selfies_model_samples_valid_molecules(tmp_path):
    config = check_config({"out_dir": str(tmp_path / "sf"), "representation": "selfies", "preset": "tiny",
                           "steps": 2, "batch_size": 8, "train": {"checkpoint_every": 0}})
    train_on_molecules(MoleculeSet(list(TINY_SMILES[:30]), [], {"source": "test"}), config, progress=False)
    generation = noisecraft.load(tmp_path / "sf").generate({"n": 4, "steps": 4}, seed=0)
    assert generation.parameters["representation"] == "selfies"
    assert sum(bool(row["smiles"]) for row in generation.items) >= 3  # SELFIES decode to molecules


def test_conditioning_moves_the_property_the_requested_way(tmp_path):
    """Ethers C_k O C_j: molecular weight is a function of the length. A tiny model conditioned on it must give
    light molecules for a low target and heavy ones for a high target."""
    smiles = ["C" * k + "O" + "C" * j for k in range(1, 13) for j in range(0, 4)]
    config = check_config({"out_dir": str(tmp_path / "cond"), "properties": "mw", "preset": "tiny", "steps": 100,
                           "batch_size": 32, "lr": 3e-3, "property_drop_prob": 0.0,
                           "train": {"checkpoint_every": 0, "log_every": 50, "warmup_steps": 10, "ema_decay": 0.9}})
    train_on_molecules(MoleculeSet(smiles, [], {"source": "ethers"}), config, progress=False)
    pipeline = noisecraft.load(tmp_path / "cond")
    means = {}
    for target in (60, 200):
        rows = pipeline.generate({"n": 32, "targets": [f"mw={target}"], "guidance": 2.0, "steps": 8}, seed=0).items
        weights = [row["mw"] for row in rows if row["smiles"]]
        assert len(weights) >= 8, f"only {len(weights)} of 32 samples are molecules"
        means[target] = float(np.mean(weights))
    assert means[60] < 110 < 150 < means[200], means
