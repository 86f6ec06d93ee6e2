"""Molecule tokenizers, data reading (canonical SMILES, invalid lines reported, bad files) and property names."""

from __future__ import annotations

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")

from noisecraft.molecules.data import canonical_smiles, moses_molecules, read_molecules  # noqa: E402
from noisecraft.molecules.properties import PROPERTIES, compute_table, parse_properties, parse_target  # noqa: E402
from noisecraft.molecules.tokenizers import (SelfiesTokenizer, SmilesTokenizer, TokenizeError,  # noqa: E402
                                             load_tokenizer, split_smiles)
from noisecraft.molecules.training import TINY_SMILES  # noqa: E402


@pytest.fixture(scope="module")
def moses_first():
    """The first molecules of the embedded MOSES subset (the tiny built-in list when molsets is absent)."""
    try:
        return moses_molecules("moses:200").smiles
    except ImportError:
        return list(TINY_SMILES)


def test_smiles_tokens_are_atoms_and_round_trip(moses_first, tmp_path):
    assert split_smiles("C[C@@H](Cl)c1ccc(Br)cc1[nH+]%12CC%12") == [
        "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1", "[nH+]", "%12", "C",
        "C", "%12"]
    tokenizer = SmilesTokenizer.fit(moses_first)
    assert "Cl" in tokenizer.tokens and "C" in tokenizer.tokens and "l" not in tokenizer.tokens
    for smiles in moses_first:
        ids = tokenizer.encode(smiles)
        assert tokenizer.decode(ids + [tokenizer.eos_id, tokenizer.pad_id, 0]) == smiles
    loaded = load_tokenizer(tokenizer.save(tmp_path))
    assert loaded.tokens == tokenizer.tokens and loaded.representation == "smiles"
    with pytest.raises(TokenizeError, match="'X' at position 1"):
        split_smiles("CXC")
    with pytest.raises(TokenizeError, match="vocabulary lacks: \\[Se\\]"):
        tokenizer.encode("C[Se]C")


def test_selfies_round_trip_to_the_same_molecule(moses_first):
    tokenizer = SelfiesTokenizer.fit(moses_first[:100])
    assert all(token.startswith("[") for token in tokenizer.tokens)
    for smiles in moses_first[:100]:
        decoded = tokenizer.decode(tokenizer.encode(smiles))
        assert canonical_smiles(decoded) == smiles  # the subset is stored canonical


def test_canonicalisation_and_invalid_lines_reported(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("SMILES\nOCC name1\nC1CC\n\nc1ccccc1\nC(C)(C)(C)(C)C\nCCO\n", encoding="utf-8")
    molecules = read_molecules(path)
    assert molecules.smiles == ["CCO", "c1ccccc1", "CCO"]  # OCC and CCO: one canonical string
    assert [line for line, _, _ in molecules.skipped] == [3, 6]
    assert "skipped 2 invalid SMILES of 5" in molecules.report and "line 3 'C1CC'" in molecules.report
    assert "line 6" in molecules.report and "\n" not in molecules.report


def test_csv_column_and_bad_files(tmp_path):
    table = tmp_path / "mols.csv"
    table.write_text("id,Smiles,value\n1,C1=CC=CC=C1,3\n2,CC(=O)O,4\n", encoding="utf-8")
    assert read_molecules(table).smiles == ["c1ccccc1", "CC(=O)O"]
    assert read_molecules(table, column="Smiles").smiles == ["c1ccccc1", "CC(=O)O"]
    with pytest.raises(ValueError, match="no column 'smi'; its columns are: id, Smiles, value"):
        read_molecules(table, column="smi")
    empty = tmp_path / "empty.smi"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        read_molecules(empty)
    bad = tmp_path / "bad.smi"
    bad.write_text("xyz\nC1CC\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no valid molecule: all 2 SMILES are invalid") as error:
        read_molecules(bad)
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="molecule file not found"):
        read_molecules(tmp_path / "missing.smi")
    with pytest.raises(ValueError, match="unknown embedded data set"):
        moses_molecules("mosesx")


def test_properties_names_targets_and_values():
    assert parse_properties("QED, logp,sa") == ["qed", "logp", "sa"]
    with pytest.raises(ValueError, match="unknown property 'potency'; known: qed, logp, sa, mw, tpsa"):
        parse_properties("qed,potency")
    assert parse_target("qed=0.8", ["qed"]) == ("qed", 0.8)
    for bad, message in (("qed", "not NAME=VALUE"), ("qed=high", "'high' is not a number"),
                         ("logp=2", "not one it was trained on; this model takes targets for: qed"),
                         ("zz=1", "'zz' is not a property")):
        with pytest.raises(ValueError, match=message):
            parse_target(bad, ["qed"])
    with pytest.raises(ValueError, match="trained without properties"):
        parse_target("qed=0.5", [])
    values = compute_table(["CCO", "c1ccccc1"], list(PROPERTIES))
    ethanol = dict(zip(PROPERTIES, values[0]))
    assert ethanol["mw"] == pytest.approx(46.07, abs=0.01) and ethanol["hbd"] == 1 and ethanol["rings"] == 0
    assert 1 <= ethanol["sa"] <= 10 and 0 < ethanol["qed"] < 1
    assert dict(zip(PROPERTIES, values[1]))["rings"] == 1


def test_parallel_canonicalisation_gives_the_same_set(monkeypatch, tmp_path):
    from noisecraft.molecules import data

    path = tmp_path / "mols.smi"
    path.write_text("OCC\nC1CC\nc1ccccc1\nxyz\nCC(=O)O\n", encoding="utf-8")
    serial = data.read_molecules(path)
    monkeypatch.setattr(data, "PARALLEL_FROM", 2)
    parallel = data.read_molecules(path)
    assert parallel.smiles == serial.smiles == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert parallel.skipped == serial.skipped and [line for line, _, _ in parallel.skipped] == [2, 4]
