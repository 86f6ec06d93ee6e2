"""Molecular properties computed with RDKit, and their normalisation (stored with a model).

Names (``--properties qed,logp,sa``): :data:`PROPERTIES`. QED: Bickerton et al. 2012 (``rdkit.Chem.QED``); logP:
Wildman-Crippen (``Crippen.MolLogP``); SA: the synthetic-accessibility score of Ertl & Schuffenhauer 2009 (1 easy ..
10 hard) from RDKit's Contrib ``SA_Score/sascorer.py``; the others RDKit descriptors. Values are standardised with
the training set's mean and standard deviation; the training range (min, max) is stored too, so a target outside
it can be flagged.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

_SASCORER = None


def sascorer():
    """RDKit Contrib's SA_Score module (``RDConfig.RDContribDir/SA_Score/sascorer.py``), loaded once."""
    global _SASCORER
    if _SASCORER is None:
        from rdkit.Chem import RDConfig

        path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
        if not path.is_file():
            raise FileNotFoundError(f"RDKit's SA score is missing ({path}); reinstall rdkit")
        spec = importlib.util.spec_from_file_location("noisecraft_sascorer", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.readFragmentScores()
        _SASCORER = module
    return _SASCORER


def _qed(mol) -> float:
    from rdkit.Chem import QED

    return QED.qed(mol)


def _logp(mol) -> float:
    from rdkit.Chem import Crippen

    return Crippen.MolLogP(mol)


def _sa(mol) -> float:
    return sascorer().calculateScore(mol)


def _descriptor(name: str) -> Callable:
    def compute(mol) -> float:
        from rdkit.Chem import Descriptors, rdMolDescriptors

        functions = {"mw": Descriptors.MolWt, "tpsa": rdMolDescriptors.CalcTPSA, "hbd": rdMolDescriptors.CalcNumHBD,
                     "hba": rdMolDescriptors.CalcNumHBA, "rotb": rdMolDescriptors.CalcNumRotatableBonds,
                     "rings": rdMolDescriptors.CalcNumRings}
        return float(functions[name](mol))

    return compute


@dataclass(frozen=True)
class Property:
    name: str
    description: str
    compute: Callable
    tolerance: float  # the hit-rate window of targeting metrics (requested +- tolerance)
    integer: bool = False


PROPERTIES: dict[str, Property] = {p.name: p for p in (
    Property("qed", "drug-likeness QED (0..1)", _qed, 0.05),
    Property("logp", "Crippen logP", _logp, 0.5),
    Property("sa", "synthetic accessibility score (1 easy .. 10 hard)", _sa, 0.5),
    Property("mw", "molecular weight (g/mol)", _descriptor("mw"), 25.0),
    Property("tpsa", "topological polar surface area (A^2)", _descriptor("tpsa"), 10.0),
    Property("hbd", "hydrogen-bond donors", _descriptor("hbd"), 0.5, True),
    Property("hba", "hydrogen-bond acceptors", _descriptor("hba"), 0.5, True),
    Property("rotb", "rotatable bonds", _descriptor("rotb"), 0.5, True),
    Property("rings", "ring count", _descriptor("rings"), 0.5, True),
)}
REPORTED = ("qed", "logp", "sa", "mw")  # computed for every generated molecule, whatever the model was trained on


def parse_properties(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"qed,logp,sa"`` (or a list) -> checked names, in the given order; unknown names are an error listing the
    known ones; empty -> no properties (an unconditional model)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    unknown = [name for name in names if name not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(PROPERTIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a property is listed twice in {value!r}")
    return names


def compute(mol, names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``{name: value}`` for an RDKit molecule."""
    return {name: float(PROPERTIES[name].compute(mol)) for name in names}


def compute_table(smiles: list[str], names: list[str]):
    """float64 array ``[len(smiles), len(names)]`` for valid SMILES (canonical ones from :mod:`.data`)."""
    import numpy as np
    from rdkit import Chem

    out = np.empty((len(smiles), len(names)), dtype=np.float64)
    for i, item in enumerate(smiles):
        mol = Chem.MolFromSmiles(item)
        if mol is None:
            raise ValueError(f"invalid SMILES {item!r} in a property table")
        out[i] = [PROPERTIES[name].compute(mol) for name in names]
    return out


@dataclass
class Normalizer:
    """Standardisation of property values, stored in the model's ``extra["properties"]``."""

    names: list[str]
    mean: list[float]
    std: list[float]
    minimum: list[float]
    maximum: list[float]

    @classmethod
    def fit(cls, table, names: list[str]) -> "Normalizer":
        std = [float(s) if s > 1e-8 else 1.0 for s in table.std(0)]
        return cls(list(names), [float(m) for m in table.mean(0)], std, [float(v) for v in table.min(0)],
                   [float(v) for v in table.max(0)])

    def normalise(self, name: str, value: float) -> float:
        i = self.names.index(name)
        return (value - self.mean[i]) / self.std[i]

    def normalise_table(self, table):
        import numpy as np

        return (table - np.asarray(self.mean)) / np.asarray(self.std)

    def range(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        return self.minimum[i], self.maximum[i]

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "mean": self.mean, "std": self.std, "min": self.minimum, "max": self.maximum}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Normalizer":
        return cls(list(data["names"]), list(data["mean"]), list(data["std"]), list(data["min"]), list(data["max"]))


def parse_target(text: str, known: list[str]) -> tuple[str, float]:
    """``"qed=0.8"`` -> ("qed", 0.8); a malformed target or a property the model was not trained on is an error."""
    name, sep, value = str(text).partition("=")
    name = name.strip().lower()
    if not sep or not name or not value.strip():
        raise ValueError(f"target {text!r} is not NAME=VALUE (e.g. qed=0.8)")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"target {text!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"target {text!r}: the value must be a finite number")
    if not known:
        raise ValueError(f"target {text!r}: this model was trained without properties, so it takes no targets "
                         f"(fit with --properties, e.g. qed,logp,sa)")
    if name not in known:
        hint = f" ({PROPERTIES[name].description}) is not one it was trained on" if name in PROPERTIES else \
            " is not a property"
        raise ValueError(f"target {text!r}: {name!r}{hint}; this model takes targets for: {', '.join(known)}")
    return name, number
