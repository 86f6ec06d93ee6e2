"""Metrics of generated molecules: the MOSES benchmark's (Polykovskiy et al. 2020, "Molecular Sets (MOSES)",
Front. Pharmacol.; definitions as in its ``moses.metrics`` code) and property-targeting ones.

Distribution (``gen``: generated SMILES, "" for a failed sample; ``train`` / ``ref``: reference SMILES):

- validity: the fraction of ``gen`` that RDKit parses and sanitises;
- unique@k: among the first k VALID molecules (canonical SMILES), the fraction of distinct ones;
- novelty: the fraction of distinct valid molecules not in the training set (canonical SMILES);
- IntDiv_p: 1 - mean_x (mean_y T(x, y)^p)^(1/p) over the valid molecules x, y (x = y included), T the Tanimoto
  similarity of Morgan fingerprints (radius 2, 1024 bits); IntDiv1 (p = 1), IntDiv2 (p = 2). This is what
  ``moses.metrics.internal_diversity`` computes (the p-th root per molecule); the paper's formula, 1 - (mean over
  all pairs of T^p)^(1/p), agrees for p = 1 and is slightly smaller for p = 2;
- SNN: the mean over valid generated molecules of the largest Tanimoto similarity to a reference molecule;
- Frag: the cosine similarity of the counts of BRICS fragments (``FragmentOnBRICSBonds``) of generated and
  reference molecules;
- Scaf: the cosine similarity of the counts of Bemis-Murcko scaffolds (with at least 2 rings, as MOSES's code);
- FCD: the Frechet ChemNet Distance (Preuer et al. 2018) through ``fcd_torch`` (ChemNet weights ship in its
  wheel), when installed; otherwise reported as missing.

Targeting (rows of a sampled CSV with ``target_<name>`` columns): MAE between requested and achieved value over
valid molecules, hit rate within the property's tolerance (QED +-0.05, logP +-0.5, SA +-0.5, ...; invalid
molecules count as misses), and GenMol's "quality" (Lee et al. 2025): the fraction of ALL generated samples that
are valid, unique (first occurrence) and have QED >= 0.6 and SA <= 4.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from .data import parse_smiles, quiet_rdkit
from .properties import PROPERTIES

FP_RADIUS, FP_BITS = 2, 1024
QUALITY_QED, QUALITY_SA = 0.6, 4.0


def _mols(smiles: list[str]):
    """(canonical SMILES, mols) of the valid entries, in order (duplicates kept)."""
    from rdkit import Chem

    canon, mols = [], []
    for item in smiles:
        mol, _ = parse_smiles(item or "")
        if mol is not None:
            canon.append(Chem.MolToSmiles(mol))
            mols.append(mol)
    return canon, mols


def validity(gen: list[str]) -> float:
    if not gen:
        raise ValueError("no generated molecules to evaluate")
    return sum(parse_smiles(s or "")[0] is not None for s in gen) / len(gen)


def unique_at(valid_canonical: list[str], k: int) -> float | None:
    """unique@k over the first k valid canonical SMILES; None when fewer than k are valid."""
    if len(valid_canonical) < k:
        return None
    return len(set(valid_canonical[:k])) / k


def uniqueness(valid_canonical: list[str]) -> float:
    return len(set(valid_canonical)) / len(valid_canonical) if valid_canonical else 0.0


def novelty(valid_canonical: list[str], train_canonical: set[str]) -> float:
    distinct = set(valid_canonical)
    return len(distinct - train_canonical) / len(distinct) if distinct else 0.0


def fingerprints(mols) -> np.ndarray:
    """Morgan bit vectors (radius 2, 1024 bits) as a uint8 array ``[N, 1024]``."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    if not len(mols):
        return np.zeros((0, FP_BITS), dtype=np.uint8)
    return np.stack([generator.GetFingerprintAsNumPy(mol).astype(np.uint8) for mol in mols])


def tanimoto(a: np.ndarray, b: np.ndarray, batch: int = 4096):
    """Yield (row slice, Tanimoto matrix [rows of a, len(b)]) blocks; empty fingerprints on both sides give 1."""
    bf = b.astype(np.float32)
    b_counts = bf.sum(1)
    for start in range(0, len(a), batch):
        af = a[start:start + batch].astype(np.float32)
        inter = af @ bf.T
        union = af.sum(1)[:, None] + b_counts[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)
        yield slice(start, start + len(af)), sim


def internal_diversity(fps: np.ndarray, p: int = 1) -> float:
    per_molecule = np.zeros(len(fps))
    for rows, sim in tanimoto(fps, fps):
        per_molecule[rows] = (sim.astype(np.float64) ** p).mean(1) ** (1 / p)
    return float(1 - per_molecule.mean())


def snn(gen_fps: np.ndarray, ref_fps: np.ndarray) -> float:
    best = np.zeros(len(gen_fps))
    for start in range(0, len(ref_fps), 4096):
        for rows, sim in tanimoto(gen_fps, ref_fps[start:start + 4096]):
            best[rows] = np.maximum(best[rows], sim.max(1))
    return float(best.mean())


def fragments(mols) -> Counter:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    counts: Counter = Counter()
    for mol in mols:
        counts.update(Chem.MolToSmiles(AllChem.FragmentOnBRICSBonds(mol)).split("."))
    return counts


def scaffolds(mols, min_rings: int = 2) -> Counter:
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    counts: Counter = Counter()
    for mol in mols:
        try:
            scaffold = MurckoScaffold.GetScaffoldForMol(mol)
        except (ValueError, RuntimeError):
            continue
        text = Chem.MolToSmiles(scaffold)
        if text and scaffold.GetRingInfo().NumRings() >= min_rings:
            counts[text] += 1
    return counts


def cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return float("nan")
    keys = sorted(set(a) | set(b))
    va = np.array([a.get(k, 0) for k in keys], dtype=np.float64)
    vb = np.array([b.get(k, 0) for k in keys], dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def fcd(gen_canonical: list[str], ref_canonical: list[str], device: str = "cpu") -> tuple[float | None, str]:
    """(FCD, "") with fcd_torch, or (None, why not)."""
    try:
        from fcd_torch import FCD
    except ImportError:
        return None, "fcd_torch is not installed (pip install fcd_torch)"
    if len(gen_canonical) < 2 or len(ref_canonical) < 2:
        return None, "FCD needs at least 2 valid molecules on each side"
    return float(FCD(device=device, n_jobs=1)(gen=gen_canonical, ref=ref_canonical)), ""


def distribution_metrics(gen: list[str], train: list[str], ref: list[str] | None = None, *, use_fcd: bool = True,
                         device: str = "cpu", train_canonical: bool = False) -> dict[str, Any]:
    """MOSES metrics of ``gen`` against ``train`` (novelty) and ``ref`` (SNN, Frag, Scaf, FCD; the training set when
    no test set is given: then the keys say /Train). ``train_canonical``: ``train`` already holds this RDKit's
    canonical SMILES (from :mod:`.data`), so novelty compares strings without parsing it again (1.6M molecules)."""
    quiet_rdkit()
    valid_fraction = validity(gen)
    canon, mols = _mols(gen)
    train_set = set(train) if train_canonical and ref is not None else set(_mols(train)[0])
    out: dict[str, Any] = {"samples": len(gen), "valid_samples": len(canon), "validity": valid_fraction,
                           "unique": uniqueness(canon)}
    for k in (1000, 10000):
        out[f"unique@{k // 1000}k"] = unique_at(canon, k)
    out["novelty"] = novelty(canon, train_set) if canon else None
    if not canon:
        return out
    fps = fingerprints(mols)
    out["IntDiv1"], out["IntDiv2"] = internal_diversity(fps, 1), internal_diversity(fps, 2)
    tag = "Test" if ref is not None else "Train"
    ref_canon, ref_mols = _mols(ref if ref is not None else train)
    out[f"SNN/{tag}"] = snn(fps, fingerprints(ref_mols))
    out[f"Frag/{tag}"] = cosine(fragments(ref_mols), fragments(mols))
    out[f"Scaf/{tag}"] = cosine(scaffolds(ref_mols), scaffolds(mols))
    if use_fcd:
        value, why = fcd(canon, ref_canon, device)
        out[f"FCD/{tag}"] = value
        if why:
            out["FCD_missing"] = why
    return {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in out.items()}


def targeting_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MAE and hit rate per targeted property (``target_<name>`` columns; achieved values recomputed from SMILES),
    and GenMol's quality over all rows."""
    from rdkit import Chem

    quiet_rdkit()
    out: dict[str, Any] = {}
    mols = []
    for row in rows:
        mol, _ = parse_smiles(row.get("smiles") or "")
        mols.append(mol)
    names = [key[len("target_"):] for key in (rows[0] if rows else {}) if key.startswith("target_")]
    for name in names:
        if name not in PROPERTIES:
            continue
        errors, hits, count = [], 0, 0
        for row, mol in zip(rows, mols):
            value = row.get(f"target_{name}")
            if value in (None, ""):
                continue
            count += 1
            if mol is None:
                continue
            error = abs(PROPERTIES[name].compute(mol) - float(value))
            errors.append(error)
            hits += error <= PROPERTIES[name].tolerance
        out[name] = {"mae": float(np.mean(errors)) if errors else None, "hit_rate": hits / count if count else None,
                     "tolerance": PROPERTIES[name].tolerance, "targeted": count, "valid": len(errors)}
    seen, good = set(), 0
    for mol in mols:
        if mol is None:
            continue
        key = Chem.MolToSmiles(mol)
        if key in seen:
            continue
        seen.add(key)
        good += PROPERTIES["qed"].compute(mol) >= QUALITY_QED and PROPERTIES["sa"].compute(mol) <= QUALITY_SA
    out["quality"] = good / len(rows) if rows else None
    return out
