"""The three benchmark tables, each with a fixed train/holdout split. All ship inside installed packages (no
downloads): statsmodels' `fair` (Fair 1978; 6,366 rows of survey ratings and a 0/1 label), SDMetrics' demo
`student_placements` (215 rows: categories, booleans, dates, missing values, an ID) and scikit-learn's
`breast_cancer` (569 rows, 30 continuous features + a 0/1 label)."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

HOLDOUT_SHARE = 0.2
SPLIT_SEED = 0  # one split for every method and seed


def load_fair() -> tuple[pd.DataFrame, str]:
    """The label of statsmodels' own logit example, affair = (affairs > 0), in place of the affairs rate: a
    regression on the rate is noise (R^2 of the real-data models ~ 0), which would make TSTR meaningless."""
    import statsmodels.api as sm

    frame = sm.datasets.fair.load_pandas().data
    frame["affair"] = (frame.pop("affairs") > 0).astype(int)
    return frame, "affair"


def load_student_placements() -> tuple[pd.DataFrame, str]:
    from sdmetrics.demos import load_single_table_demo

    real, _, _ = load_single_table_demo()
    return real["student_placements"], "placed"


def load_breast_cancer() -> tuple[pd.DataFrame, str]:
    from sklearn.datasets import load_breast_cancer as load

    return load(as_frame=True).frame, "target"


DATASETS = {"fair": load_fair, "student_placements": load_student_placements, "breast_cancer": load_breast_cancer}


def load_split(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(train, holdout, target); classification targets are split stratified."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    frame, target = DATASETS[name]()
    stratify = frame[target] if frame[target].nunique() <= 20 else None
    train, holdout = train_test_split(frame, test_size=HOLDOUT_SHARE, random_state=SPLIT_SEED, stratify=stratify)
    return train.reset_index(drop=True), holdout.reset_index(drop=True), target
