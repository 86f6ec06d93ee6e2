"""Synthetic tabular data: joint Gaussian (numeric) + masked (categorical) diffusion on the shared engine.

Python API::

    from noisecraft import tabular
    model = tabular.fit("data.csv", target="label", minutes=5, out_dir="runs/table")
    rows = model.sample(1000, where={"label": 1}, seed=0)
    model = tabular.TabularModel.load("runs/table")
    report = tabular.evaluate("train.csv", rows, holdout="test.csv", target="label")
"""

from .evaluate import evaluate
from .io import read_table, write_table
from .model import TabularModel, fit
from .schema import ColumnSpec, Schema, TabularDataWarning, infer_schema

__all__ = [
    "ColumnSpec",
    "Schema",
    "TabularDataWarning",
    "TabularModel",
    "evaluate",
    "fit",
    "infer_schema",
    "read_table",
    "write_table",
]
