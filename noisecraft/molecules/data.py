"""Molecule data: SMILES files and CSV columns -> canonical SMILES, invalid lines reported; the embedded MOSES subset.

Inputs (:func:`read_molecules`):

- a SMILES file (``.smi``, ``.txt``, anything not ``.csv`` / ``.tsv``): one molecule per line, its first
  whitespace-separated field (``.smi`` files may carry a name after it); blank lines and ``#`` comments are
  skipped; an optional header line (``smiles``, ``SMILES``, ``canonical_smiles``) is skipped;
- a CSV / TSV file with a header: the column ``column`` (default: the one named ``smiles``, any case).

Every molecule is parsed and sanitised by RDKit and stored as its canonical SMILES (``Chem.MolToSmiles``: the same
molecule written any way gives the same string). Lines RDKit cannot read are skipped and reported with their line
numbers and a count (:attr:`MoleculeSet.report`); an empty file, a file without one valid molecule or a missing
column is an error with a one-line message.

The embedded default is a fixed subset of the MOSES benchmark (Polykovskiy et al. 2020, "Molecular Sets"), read from
the data files of the ``molsets`` package (``moses/dataset/data/{train,test,test_scaffolds}.csv.gz``): ``moses`` is
:data:`DEFAULT_SUBSET` molecules of the training split drawn with a fixed seed, ``moses:N`` the first N of that
same draw (so ``moses:1000`` is a prefix of ``moses``), ``moses-test`` / ``moses-test:N`` the test split likewise
(``moses-test-scaffolds`` the scaffold test split).
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA = "moses"
DEFAULT_SUBSET = 20_000  # the CPU recipe's training set
SUBSET_SEED = 0
MOSES_SPLITS = {"moses": "train", "moses-test": "test", "moses-test-scaffolds": "test_scaffolds"}
HEADERS = {"smiles", "canonical_smiles", "smi"}
SHOWN = 5  # invalid lines named in a report
PARALLEL_FROM = 50_000  # molecules from which canonicalisation runs in worker processes


def quiet_rdkit():
    """Silence RDKit's stderr logging (invalid SMILES are reported by us, once, with line numbers)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def parse_smiles(smiles: str):
    """``(mol, "")`` for a SMILES RDKit parses and sanitises, else ``(None, reason)``."""
    from rdkit import Chem

    quiet_rdkit()
    smiles = smiles.strip()
    if not smiles:
        return None, "empty"
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None, "SMILES syntax error"
    try:
        Chem.SanitizeMol(mol)
    except Exception as error:  # RDKit raises its own sanitisation exceptions (valence, kekulisation)
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"not a valid molecule: {text}"
    if mol.GetNumAtoms() == 0:
        return None, "no atoms"
    return mol, ""


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES of ``smiles``, or None when it is not a valid molecule."""
    from rdkit import Chem

    mol, _ = parse_smiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


@dataclass
class MoleculeSet:
    """Canonical SMILES of the valid molecules, the skipped lines ``(line number, text, reason)`` and provenance."""

    smiles: list[str]
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def report(self) -> str:
        """One line: how many molecules were read and which lines were skipped (empty when none was)."""
        if not self.skipped:
            return ""
        shown = "; ".join(f"line {line} {text[:40]!r} ({reason})" for line, text, reason in self.skipped[:SHOWN])
        more = f"; ... {len(self.skipped) - SHOWN} more" if len(self.skipped) > SHOWN else ""
        return (f"{self.provenance.get('source', 'the data')}: skipped {len(self.skipped)} invalid SMILES of "
                f"{len(self.skipped) + len(self.smiles)}: {shown}{more}")


def _rows(path: Path, column: str | None) -> list[tuple[int, str]]:
    """(line number, SMILES text) of every candidate row of ``path``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte offset {error.start})") from None
    name = path.name.removesuffix(".gz").lower()
    tabular = column is not None or name.endswith((".csv", ".tsv"))
    if not tabular:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if not rows and fields[0].lower() in HEADERS:
                continue  # the optional header
            rows.append((number, fields[0]))
        return rows
    delimiter = "\t" if name.endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path} is empty: no header line and no molecule")
    names = [h.strip() for h in header]
    if column is None:
        matches = [i for i, h in enumerate(names) if h.lower() in HEADERS]
        if not matches:
            raise ValueError(f"{path} has no SMILES column (columns: {', '.join(names)}); name it with --column")
        index = matches[0]
    elif column in names:
        index = names.index(column)
    else:
        raise ValueError(f"{path} has no column {column!r}; its columns are: {', '.join(names)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        if index < len(row) and row[index].strip():
            rows.append((number, row[index].strip()))
    return rows


def read_molecules(path: str | Path, *, column: str | None = None, limit: int | None = None) -> MoleculeSet:
    """The valid molecules of a SMILES or CSV file as canonical SMILES (see the module docstring); at most
    ``limit`` valid ones (the first)."""
    if str(path).split(":")[0] in MOSES_SPLITS:
        return moses_molecules(str(path))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"molecule file not found: {path} (a SMILES file, a CSV with a SMILES column, or "
                                f"{DEFAULT_DATA!r})")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a SMILES file or a CSV file")
    rows = _rows(path, column)
    if not rows:
        raise ValueError(f"{path} is empty: it holds no SMILES line")
    return _canonicalise(rows, {"source": str(path), **({"column": column} if column else {})}, limit)


def canonical_or_reason(text: str) -> tuple[str | None, str]:
    """(canonical SMILES, "") or (None, why not)."""
    from rdkit import Chem

    mol, reason = parse_smiles(text)
    return (None, reason) if mol is None else (Chem.MolToSmiles(mol), "")


def _canonical_all(texts: list[str]) -> list[tuple[str | None, str]]:
    """:func:`canonical_or_reason` of every text, over worker processes from PARALLEL_FROM texts on (the full MOSES
    split, 1.6M molecules, takes minutes on one core); the same strings either way."""
    import multiprocessing
    import os

    workers = min(os.cpu_count() or 1, 32)
    if len(texts) < PARALLEL_FROM or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [canonical_or_reason(text) for text in texts]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(canonical_or_reason, texts, chunksize=max(1, min(2000, len(texts) // (4 * workers))))


def _canonicalise(rows: list[tuple[int, str]], provenance: dict, limit: int | None) -> MoleculeSet:
    smiles, skipped = [], []
    if limit is None:
        results = _canonical_all([text for _, text in rows])
    else:  # lazily: stop at the limit-th valid molecule
        results = (canonical_or_reason(text) for _, text in rows)
    for (number, text), (canonical, reason) in zip(rows, results):
        if canonical is None:
            skipped.append((number, text, reason))
            continue
        smiles.append(canonical)
        if limit is not None and len(smiles) >= limit:
            break
    result = MoleculeSet(smiles, skipped, {**provenance, "molecules": len(smiles), "skipped": len(skipped)})
    if not smiles:
        raise ValueError(f"{provenance.get('source', 'the data')} holds no valid molecule: all {len(skipped)} "
                         f"SMILES are invalid ({result.report.split(': ', 2)[-1]})")
    return result


def moses_file(split: str) -> Path:
    """The gzipped CSV of a MOSES split shipped in the ``molsets`` package (read as data, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        from noisecraft.registry import MissingDependency

        raise MissingDependency("the default molecule data needs the `molsets` package's data files: pip install "
                                "--no-deps molsets==0.3.1 (or give your own SMILES file)")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data" / f"{split}.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"the molsets package lacks {path.name} (looked in {path.parent}); reinstall it")
    return path


def moses_smiles(split: str = "train") -> list[str]:
    """Every SMILES of a MOSES split, in file order (as stored: MOSES wrote them canonical)."""
    lines = gzip.decompress(moses_file(split).read_bytes()).decode("utf-8").splitlines()
    return [line.split(",")[0].strip() for line in lines[1:] if line.strip()]


def moses_order(count: int, seed: int = SUBSET_SEED):
    """The fixed order in which the subsets draw a split's molecules (a seeded permutation)."""
    import numpy as np

    return np.random.default_rng(seed).permutation(count)


def moses_molecules(name: str = DEFAULT_DATA) -> MoleculeSet:
    """``moses``, ``moses:N``, ``moses-test[:N]``, ``moses-test-scaffolds[:N]``: the first N (default
    :data:`DEFAULT_SUBSET` for the training split, the whole split otherwise) of the split in its fixed order,
    canonicalised with this RDKit."""
    base, _, count = name.partition(":")
    if base not in MOSES_SPLITS:
        raise ValueError(f"unknown embedded data set {name!r}; known: {', '.join(MOSES_SPLITS)} (with :N for the "
                         f"first N molecules)")
    split = MOSES_SPLITS[base]
    everything = moses_smiles(split)
    if count:
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{name!r}: after ':' give a positive number of molecules, e.g. moses:5000")
        n = int(count)
    else:
        n = DEFAULT_SUBSET if split == "train" else len(everything)
    if n > len(everything):
        raise ValueError(f"{name!r}: the MOSES {split} split holds {len(everything)} molecules, fewer than {n}")
    order = moses_order(len(everything))[:n]
    rows = [(int(i) + 2, everything[int(i)]) for i in order]  # +2: the header is line 1
    return _canonicalise(rows, {"source": name, "split": split, "seed": SUBSET_SEED, "of": len(everything)}, None)
