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
    assert isinstance(result.exception, (ValueError, FileNotFoundError, FileExistsError)), (result.output,
                                                                                           result.exception)
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
    assert not any(row["reason"].startswith("empty") for row in generation.items)  # <eos> never comes first


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


def test_forbidden_smarts_are_named_and_drop_flagged_removes_them(model, tmp_path):
    from noisecraft.molecules.filters import alerts, flagged, parse_forbidden
    from rdkit import Chem

    forbidden = parse_forbidden(["[OX2H]", "c1ccccc1"])
    row = alerts(Chem.MolFromSmiles("OCc1ccccc1"), forbidden)
    assert row["forbidden"] == "[OX2H]; c1ccccc1" and flagged(row)
    assert not flagged(alerts(Chem.MolFromSmiles("CCC"), forbidden))
    with pytest.raises(ValueError, match="'C1\\(\\(' is not valid SMARTS"):
        parse_forbidden(["C1(("])
    out = tmp_path / "f.csv"
    # "[#6]" (any carbon) flags every molecule the model makes: all are dropped and counted
    with pytest.warns(UserWarning, match="pass the filters"):
        generation = noisecraft.load(model).generate({"n": 3, "steps": 3, "forbid": ["[#6]"], "drop_flagged": True,
                                                      "tries": 2}, seed=0)
    report = generation.parameters["flagged_report"]
    assert generation.items == [] and report["drawn"] == 6 and report["kept"] == 0
    assert report["dropped_flagged"] + report["dropped_invalid"] == 6
    _run("sample", str(model), "-n", "3", "-o", str(out), "--steps", "3", "--forbid", "[#7]")
    rows = list(csv.DictReader(out.open()))
    assert "forbidden" in rows[0]
    for row in rows:
        if row["smiles"]:
            assert (row["forbidden"] == "[#7]") == Chem.MolFromSmiles(row["smiles"]).HasSubstructMatch(
                Chem.MolFromSmarts("[#7]"))
    assert "'forbid'" in _error("sample", str(model), "-o", str(out), "--forbid", "C1((")


def test_killed_fit_resumes_from_its_checkpoint(data, tmp_path):
    """A run stopped at step 2 refuses to restart over itself and continues from its checkpoint with --resume.
    (Not compared bit for bit with a straight run: two identical CPU runs of this network already differ from the
    second step on, in the last digits of the loss.)"""
    small = ["--preset", "tiny", "--batch-size", "16"]
    run = tmp_path / "b"
    _run("fit", str(data), "-o", str(run), "--steps", "2", *small)
    first = (run / "log.jsonl").read_text().splitlines()
    assert "already holds checkpoints" in _error("fit", str(data), "-o", str(run), "--steps", "4", *small)
    assert "trained 4 steps" in _run("fit", str(data), "-o", str(run), "--steps", "4", "--resume", *small)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 2, 3, 4]
    assert [json.loads(line) for line in first] == log[:2]
    assert (run / "checkpoints" / "step_00000004").is_dir()


def test_evaluate_bad_inputs(data, tmp_path):
    assert "generated molecules not found" in _error("evaluate", str(tmp_path / "none.csv"), "--train", str(data))
    table = tmp_path / "gen.csv"
    table.write_text("mol,x\nCCO,1\n")
    assert "has no smiles column (columns: mol, x)" in _error("evaluate", str(table), "--train", str(data))
    empty = tmp_path / "gen.smi"
    empty.write_text("smiles\n")
    assert "holds no generated molecule" in _error("evaluate", str(empty), "--train", str(data))
    lines = tmp_path / "ok.smi"
    lines.write_text("CCO\n")
    assert "molecule file not found" in _error("evaluate", str(lines), "--train", str(tmp_path / "missing.smi"))


def test_scaffold_decoration_keeps_the_scaffold_tokens(model, tmp_path):
    from rdkit import Chem

    from noisecraft.molecules.tokenizers import split_smiles

    pipeline = noisecraft.load(model)
    generation = pipeline.generate({"n": 12, "steps": 6, "scaffold": "c1ccc(*)cc1C(=O)N*", "decoration_size": 3},
                                   seed=1)
    for row in generation.items:  # the template's tokens are kept; 1..3 tokens at each attachment point
        tokens = split_smiles(row["generated"])
        assert tokens[:6] == list("c1ccc(") and 1 <= tokens.index(")") - 6 <= 3
        rest = tokens[tokens.index(")"):]
        assert rest[:8] == [")", "c", "c", "1", "C", "(", "=", "O"] and rest[8:10] == [")", "N"]
        assert 1 <= len(rest) - 10 <= 3
        core = Chem.MolFromSmiles("c1ccccc1C(=O)N")  # the scaffold without its attachment points
        assert row["scaffold"] == (bool(row["smiles"]) and Chem.MolFromSmiles(row["smiles"]).HasSubstructMatch(core))
    report = generation.parameters["scaffold_report"]
    assert report["drawn"] == 12 and report["kept"] == sum(row["scaffold"] for row in generation.items)
    assert report["success_rate"] == report["kept"] / 12
    out = str(tmp_path / "s.csv")
    assert "no attachment point" in _error("sample", str(model), "-o", out, "--scaffold", "c1ccccc1")
    assert "not a valid SMILES" in _error("sample", str(model), "-o", out, "--scaffold", "c1ccc(*)c")
    assert "keep the scaffold" in _run("sample", str(model), "-o", out, "-n", "2", "--steps", "2", "--scaffold",
                                       "*C(=O)O")
