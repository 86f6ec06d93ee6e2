"""The README's molecule grid: the first valid molecules of a sampled CSV (``noisecraft molecules sample`` or
run.py's <system>.csv / targeting_*.csv) drawn by RDKit with their properties as legends.

    .venv/bin/python benchmarks/molecules/grid.py benchmarks/out/molecules/targeting_smiles_logp4.5_g1.csv \
        -o docs/images/molecules_grid.png --count 12 --properties qed,logp,sa
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from noisecraft.molecules.pipeline import grid_png  # noqa: E402
from noisecraft.training.checkpoint import atomic_write_bytes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--properties", default="qed,logp,sa")
    args = parser.parse_args()
    names = args.properties.split(",")
    rows = []
    for row in csv.DictReader(args.csv.open()):
        if row.get("smiles"):
            rows.append({"smiles": row["smiles"], **{n: float(row[n]) for n in names if row.get(n) not in (None, "")}})
    png = grid_png(rows, names, count=args.count)
    if png is None:
        raise SystemExit(f"{args.csv} holds no valid molecule")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, png)
    print(f"{min(len(rows), args.count)} molecules of {args.csv} -> {args.out}")


if __name__ == "__main__":
    main()
