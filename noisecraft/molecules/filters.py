"""Quality filters on generated molecules: RDKit's FilterCatalog alerts (PAINS, Brenk) and the user's forbidden
SMARTS. Each hit is named (the alert's description, or the forbidden SMARTS as given); a molecule with any hit is
"flagged" (``sample --drop-flagged`` removes flagged molecules and the record counts them)."""

from __future__ import annotations

from typing import Any

CATALOGS = ("pains", "brenk")
_CATALOGS: dict[str, Any] = {}


def _catalog(name: str):
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    if name not in _CATALOGS:
        params = FilterCatalogParams()
        params.AddCatalog(getattr(FilterCatalogParams.FilterCatalogs, name.upper()))
        _CATALOGS[name] = FilterCatalog(params)
    return _CATALOGS[name]


def parse_forbidden(texts: list[str]) -> list[tuple[str, Any]]:
    """(SMARTS text, RDKit pattern) of each forbidden substructure; ValueError naming the first that is not SMARTS."""
    from rdkit import Chem

    from .data import quiet_rdkit

    quiet_rdkit()
    patterns = []
    for text in texts:
        pattern = Chem.MolFromSmarts(text) if text.strip() else None
        if pattern is None:
            raise ValueError(f"forbidden substructure {text!r} is not valid SMARTS (e.g. [N+](=O)[O-] for a nitro "
                             f"group, [SH] for a thiol)")
        patterns.append((text, pattern))
    return patterns


def alerts(mol, forbidden: list[tuple[str, Any]] = ()) -> dict[str, str]:
    """The PAINS and Brenk alerts a molecule matches (descriptions joined by '; ', '' when none) and, when
    ``forbidden`` patterns are given, the forbidden SMARTS it contains (column ``forbidden``)."""
    out = {name: "; ".join(sorted({entry.GetDescription() for entry in _catalog(name).GetMatches(mol)}))
           for name in CATALOGS}
    if forbidden:
        out["forbidden"] = "; ".join(text for text, pattern in forbidden if mol.HasSubstructMatch(pattern))
    return out


def flagged(row: dict[str, Any]) -> bool:
    """Whether an analysed row has a PAINS / Brenk alert or a forbidden substructure."""
    return any(row.get(name) for name in (*CATALOGS, "forbidden"))
