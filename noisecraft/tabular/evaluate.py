"""Evaluation of a synthetic table against the real one, with the metrics of TabDDPM / TabSyn / TabDiff papers.

* Machine-learning efficiency (Xu et al. 2019, "CTGAN", Sec. 5.1): train on synthetic, test on a real holdout
  (TSTR) next to train on real, test on the same holdout (TRTR), with three scikit-learn models.
* Fidelity: SDMetrics' QualityReport (Column Shapes = KS / TV complement per column, Column Pair Trends =
  correlation / contingency similarity per pair), reported as errors 1 - score as in TabSyn (Zhang et al. 2024, Tab. 3).
* Detection (C2ST): cross-validated ROC AUC of classifiers telling real from synthetic rows; 0.5 = indistinguishable.
* Privacy: distance to closest record (DCR), the share of synthetic rows closer to the training rows than to the
  holdout rows (0.5 = no memorisation; TabSyn, Sec. 4.5) and exact copies of training rows.
* Reference: the same fidelity, detection and privacy metrics for one half of the real table against the other.
  Ideal values are rarely reachable: a column with hundreds of levels has a large pair-trend error even between two
  real samples, so each score is shown next to what real data scores against real data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .io import as_frame
from .schema import CATEGORICAL_KINDS, NUMERIC_KINDS, Schema, infer_schema
from .transforms import column_as_float

MAX_EVAL_ROWS = 20_000  # metrics are subsampled beyond this many rows to keep evaluation to seconds
MIN_REFERENCE_ROWS = 20  # each half of the real-vs-real reference needs 5 rows per detection fold, and then some
WORST_PAIRS = 10  # column pairs listed in the pair-trend breakdown
SDMETRICS_TYPES = {"continuous": "numerical", "integer": "numerical", "categorical": "categorical",
                   "boolean": "boolean", "datetime": "datetime"}


def _subsample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame


def _modelled(schema: Schema, exclude: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    numeric = [c.name for c in schema.columns if c.kind in NUMERIC_KINDS and c.name not in exclude]
    categorical = [c.name for c in schema.columns if c.kind in CATEGORICAL_KINDS and c.name not in exclude]
    return numeric, categorical


def _plain(frame: pd.DataFrame, schema: Schema, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numbers as floats (datetimes as seconds) and categories as text, the form every scikit-learn model takes."""
    out = {name: column_as_float(frame[name], schema[name]) for name in numeric}
    out.update({name: frame[name].astype(str).where(frame[name].notna(), "<missing>") for name in categorical})
    return pd.DataFrame(out, index=frame.index)


def feature_encoder(numeric: list[str], categorical: list[str], *, scaler=StandardScaler) -> ColumnTransformer:
    """Median-imputed (with missing indicators) scaled numbers and one-hot categories."""
    steps = []
    if numeric:
        steps.append(("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), scaler()), numeric))
    if categorical:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore", max_categories=50, sparse_output=False),
                      categorical))
    return ColumnTransformer(steps)


def column_quality(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, *, all_pairs: bool = False) -> dict:
    """SDMetrics QualityReport (single table) as errors: column shapes, column-pair trends, per-column shape error,
    the worst column pairs (every pair with ``all_pairs``) and each column's mean pair error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the single-table report is the one the papers report
        from sdmetrics.reports.single_table import QualityReport

    columns = {}
    for column in schema.columns:
        if column.kind in SDMETRICS_TYPES:
            columns[column.name] = {"sdtype": SDMETRICS_TYPES[column.kind]}
            if column.datetime_format:
                columns[column.name]["datetime_format"] = column.datetime_format
    names = list(columns)
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sdmetrics warns about its own deprecations and constant columns
        report.generate(real[names], synthetic[names], {"columns": columns}, verbose=False)
    scores = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes")
    pair_trends = float(scores.get("Column Pair Trends", np.nan))
    pair_errors = _pair_errors(report)
    return {
        "column_shapes_error": float(1 - scores["Column Shapes"]),
        "column_pair_trends_error": float(1 - pair_trends) if np.isfinite(pair_trends) else None,
        "per_column_shape_error": {row.Column: float(1 - row.Score) for row in shapes.itertuples()},
        "worst_pairs": pair_errors if all_pairs else pair_errors[:WORST_PAIRS],
        "pair_trends_error_by_column": _error_by_column(pair_errors),
    }


def _pair_errors(report) -> list[dict]:
    """Every scored column pair's trend error, worst first: the overall error is their mean, so one column with
    hundreds of levels (whose contingency tables are noisy even between real samples) can dominate it."""
    try:
        details = report.get_details("Column Pair Trends")
    except (KeyError, ValueError):  # fewer than two comparable columns
        return []
    if details is None or "Score" not in details:
        return []
    pairs = [
        {"columns": [str(row["Column 1"]), str(row["Column 2"])], "metric": str(row["Metric"]),
         "error": float(1 - row["Score"])}
        for _, row in details.iterrows() if np.isfinite(row["Score"])
    ]
    return sorted(pairs, key=lambda pair: -pair["error"])


def _error_by_column(pairs: list[dict]) -> dict[str, float]:
    """Mean pair-trend error of the pairs each column takes part in, worst column first."""
    errors: dict[str, list[float]] = {}
    for pair in pairs:
        for name in pair["columns"]:
            errors.setdefault(name, []).append(pair["error"])
    means = {name: float(np.mean(values)) for name, values in errors.items()}
    return dict(sorted(means.items(), key=lambda item: -item[1]))


def detection(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, *, seed: int = 0) -> dict:
    """C2ST: 5-fold cross-validated ROC AUC of logistic regression and gradient boosting on real-vs-synthetic."""
    size = min(len(real), len(synthetic), MAX_EVAL_ROWS)
    numeric, categorical = _modelled(schema)
    both = pd.concat([_subsample(real, size, seed), _subsample(synthetic, size, seed)], ignore_index=True)
    features = _plain(both, schema, numeric, categorical)
    is_synthetic = np.r_[np.zeros(size), np.ones(size)]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    classifiers = {
        "logistic": make_pipeline(feature_encoder(numeric, categorical), LogisticRegression(max_iter=1000)),
        "gradient_boosting": make_pipeline(feature_encoder(numeric, categorical),
                                           HistGradientBoostingClassifier(max_iter=100, random_state=seed)),
    }
    result = {}
    for name, classifier in classifiers.items():
        scores = cross_val_predict(classifier, features, is_synthetic, cv=folds, method="predict_proba")[:, 1]
        result[f"{name}_auc"] = float(roc_auc_score(is_synthetic, scores))
    result["auc"] = max(result.values())  # the stronger detector decides
    return result


def _labels(frame: pd.DataFrame, schema: Schema, target: str) -> pd.Series:
    """Class labels as text (categorical targets) or numbers (numeric targets), one rule for all three tables."""
    if schema[target].kind in CATEGORICAL_KINDS:
        return frame[target].astype(str)
    return pd.Series(column_as_float(frame[target], schema[target]), index=frame.index)


def _task_models(task: str, seed: int) -> dict:
    if task == "regression":
        return {
            "gradient_boosting": HistGradientBoostingRegressor(random_state=seed),
            "random_forest": RandomForestRegressor(n_estimators=100, n_jobs=1, random_state=seed),
            "linear": Ridge(alpha=1.0),
        }
    return {
        "gradient_boosting": HistGradientBoostingClassifier(random_state=seed),
        "random_forest": RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed),
        "linear": LogisticRegression(max_iter=1000),
    }


def _score(task: str, model, features: pd.DataFrame, labels: pd.Series, classes: list) -> float:
    if task == "regression":
        return float(r2_score(labels, model.predict(features)))
    if task == "binary":
        probabilities = model.predict_proba(features)
        column = list(model.classes_).index(classes[1]) if classes[1] in model.classes_ else None
        positive = probabilities[:, column] if column is not None else np.zeros(len(labels))
        return float(roc_auc_score(labels == classes[1], positive))
    return float(f1_score(labels, model.predict(features), average="macro"))


def check_target(schema: Schema, target: str) -> None:
    """Reject a target that is not a predictable column, before any metric runs and whether or not a holdout is
    given: a typo would otherwise be recorded in the report and only fail once a holdout is added."""
    if target not in schema.names:
        raise ValueError(f"target {target!r} is not a column of the real table; columns are {schema.names}")
    kind = schema[target].kind
    if kind not in NUMERIC_KINDS + CATEGORICAL_KINDS:
        raise ValueError(f"target {target!r} is {kind} and cannot be predicted; pick a modelled column "
                         f"(or set its kind in a schema file)")


def ml_efficiency(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, target: str,
                  *, seed: int = 0) -> dict:
    """TSTR vs TRTR on the holdout: ROC AUC (binary), macro F1 (multiclass) or R^2 (regression) per model."""
    check_target(schema, target)
    kind = schema[target].kind
    numeric, categorical = _modelled(schema, exclude=(target,))
    holdout = holdout[holdout[target].notna()]
    if kind in CATEGORICAL_KINDS:
        classes = sorted(_labels(real, schema, target).unique())
        task = "binary" if len(classes) == 2 else "multiclass"
    else:
        classes, task = [], "regression"
    metric = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "r2"}[task]
    test_features = _plain(holdout, schema, numeric, categorical)
    result = {"task": task, "metric": metric, "models": {}}
    for source, frame in (("trtr", real), ("tstr", synthetic)):
        frame = _subsample(frame[frame[target].notna()], MAX_EVAL_ROWS, seed)
        train_labels = _labels(frame, schema, target)
        for name, model in _task_models(task, seed).items():
            pipeline = make_pipeline(feature_encoder(numeric, categorical), model)
            if task != "regression" and train_labels.nunique() < 2:
                score = 0.5 if task == "binary" else 0.0  # a one-class training set predicts nothing
            else:
                pipeline.fit(_plain(frame, schema, numeric, categorical), train_labels)
                score = _score(task, pipeline, test_features, _labels(holdout, schema, target), classes)
            result["models"].setdefault(name, {})[source] = score
    for source in ("trtr", "tstr"):
        result[source] = float(np.mean([scores[source] for scores in result["models"].values()]))
    return result


def privacy(synthetic: pd.DataFrame, train: pd.DataFrame, schema: Schema, holdout: pd.DataFrame | None = None,
            *, seed: int = 0) -> dict:
    """Distance to closest record (min-max scaled numbers + one-hot categories, L2), the share of synthetic rows
    closer to training than to holdout rows (training subsampled to the holdout's size, so 0.5 is ideal), and
    exact copies of training rows."""
    numeric, categorical = _modelled(schema)
    synthetic = _subsample(synthetic, MAX_EVAL_ROWS, seed)
    encoder = feature_encoder(numeric, categorical, scaler=MinMaxScaler)
    train_features = encoder.fit_transform(_plain(train, schema, numeric, categorical))
    synthetic_features = encoder.transform(_plain(synthetic, schema, numeric, categorical))
    distance_train = NearestNeighbors(n_neighbors=1).fit(train_features).kneighbors(synthetic_features)[0][:, 0]
    names = numeric + categorical
    train_rows = train[names].astype(str).drop_duplicates()
    copies = synthetic[names].astype(str).merge(train_rows, how="inner")
    result = {
        "dcr_train_median": float(np.median(distance_train)),
        "dcr_train_5th_percentile": float(np.percentile(distance_train, 5)),
        "exact_copies": int(len(copies)),
        "exact_copy_share": float(len(copies) / len(synthetic)),
    }
    if holdout is not None:
        rng = np.random.default_rng(seed)
        size = min(len(train), len(holdout))
        train_part = train_features[rng.choice(len(train_features), size=size, replace=False)]
        holdout_part = encoder.transform(_plain(holdout, schema, numeric, categorical))
        holdout_part = holdout_part[rng.choice(len(holdout_part), size=size, replace=False)]
        to_train = NearestNeighbors(n_neighbors=1).fit(train_part).kneighbors(synthetic_features)[0][:, 0]
        to_holdout = NearestNeighbors(n_neighbors=1).fit(holdout_part).kneighbors(synthetic_features)[0][:, 0]
        closer = (to_train < to_holdout) + 0.5 * (to_train == to_holdout)  # ties count half
        result["dcr_holdout_median"] = float(np.median(to_holdout))
        # Fresh real rows also repeat training rows when columns have few levels: the copy rate to expect.
        result["holdout_exact_copy_share"] = float(len(holdout[names].astype(str).merge(train_rows)) / len(holdout))
        result["closer_to_train_share"] = float(closer.mean())
    return result


def evaluate(real, synthetic, *, holdout=None, target: str | None = None, schema: Schema | dict | None = None,
             seed: int = 0, threads: int | None = 1, reference: bool = True, progress: bool = False,
             sep: str | None = None, encoding: str = "utf-8") -> dict:
    """Full report (a JSON-able dict). ``real`` is the training table; TSTR/TRTR and the train-vs-holdout privacy
    share need ``holdout``; TSTR/TRTR also need ``target``. Tables may be DataFrames or CSV/Parquet paths.

    ``reference``: also score one half of the real table against the other (``report["reference"]``), the bar a
    synthetic table can be held to; it roughly doubles the time. ``progress``: a progress bar on stderr.
    ``sep`` / ``encoding``: how to read the real and holdout files when paths are given (the synthetic file's
    delimiter is always detected, and it is read as UTF-8, as ``sample`` writes it, unless it does not decode).

    ``threads`` caps the BLAS/OpenMP threads of the scikit-learn models (None: all cores). One thread is the
    default because at <= 20,000 rows the models gain little from more, and OpenMP's spinning threads slow down
    by an order of magnitude on a machine whose cores are busy with other work.
    """
    real = as_frame(real, sep=sep, encoding=encoding)
    synthetic = read_synthetic(synthetic, encoding=encoding)
    holdout = None if holdout is None else as_frame(holdout, sep=sep, encoding=encoding)
    with threadpool_limits(limits=threads):
        return _evaluate(real, synthetic, holdout=holdout, target=target, schema=schema, seed=seed,
                         reference=reference, progress=progress)


def read_synthetic(synthetic, *, encoding: str = "utf-8") -> pd.DataFrame:
    """The synthetic table: UTF-8 first (``sample`` writes UTF-8 even when the real file is Latin-1, and reading
    UTF-8 as Latin-1 would silently garble every accented label), then ``encoding``."""
    if encoding.lower().replace("-", "") in ("utf8", "ascii") or not isinstance(synthetic, (str, Path)):
        return as_frame(synthetic, encoding=encoding)
    try:
        return as_frame(synthetic, encoding="utf-8")
    except ValueError as error:
        if "not valid utf-8" not in str(error):
            raise
        return as_frame(synthetic, encoding=encoding)


def _check_tables(schema: Schema, synthetic: pd.DataFrame, holdout: pd.DataFrame | None) -> None:
    for name, frame in (("synthetic", synthetic), ("holdout", holdout)):
        absent = [] if frame is None else [c.name for c in schema.columns if c.modelled and c.name not in frame]
        if absent:
            raise ValueError(f"the {name} table lacks columns of the real table: {absent}")


def _halves(real: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint random halves of the (subsampled) real table."""
    order = np.random.default_rng(seed).permutation(len(real))
    middle = len(real) // 2
    return real.iloc[order[:middle]], real.iloc[order[middle:2 * middle]]


def _evaluate(real, synthetic, *, holdout, target, schema, seed, reference=True, progress=False) -> dict:
    if schema is None or isinstance(schema, dict):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warnings were already shown when fitting
            schema = infer_schema(real, overrides=schema)
    if target is not None:
        check_target(schema, target)
    _check_tables(schema, synthetic, holdout)
    real_sample = _subsample(real, MAX_EVAL_ROWS, seed)
    with_ml = holdout is not None and target is not None
    with_reference = reference and len(real_sample) >= MIN_REFERENCE_ROWS
    stages = 3 + with_ml + 3 * with_reference
    with tqdm(total=stages, desc="evaluating", unit="metric", disable=not progress, leave=False) as bar:
        def step(name: str, compute):
            bar.set_postfix_str(name)
            value = compute()
            bar.update()
            return value

        report = {
            "rows": {"real": len(real), "synthetic": len(synthetic),
                     "holdout": None if holdout is None else len(holdout)},
            "target": target,
            "fidelity": step("fidelity", lambda: column_quality(
                real_sample, _subsample(synthetic, MAX_EVAL_ROWS, seed), schema)),
            "detection": step("detection", lambda: detection(real, synthetic, schema, seed=seed)),
            "privacy": step("privacy", lambda: privacy(synthetic, real_sample, schema, holdout, seed=seed)),
        }
        if with_ml:
            report["ml_efficiency"] = step("ml efficiency", lambda: ml_efficiency(
                real, synthetic, holdout, schema, target, seed=seed))
        else:
            report["ml_efficiency"] = {"skipped": "needs both a holdout table and a target column"}
        if with_reference:
            report["reference"] = _reference(real_sample, holdout, schema, seed, step)
            _attach_reference_pairs(report)
            if "tstr" in report["ml_efficiency"]:
                report["reference"]["ml_efficiency"] = {"tstr": report["ml_efficiency"]["trtr"]}
        elif reference:
            report["reference"] = {"skipped": f"needs at least {MIN_REFERENCE_ROWS} real rows"}
    return report


def _reference(real: pd.DataFrame, holdout: pd.DataFrame | None, schema: Schema, seed: int, step) -> dict:
    """Half of the real table scored as if it were the synthetic table against the other half."""
    first, second = _halves(real, seed)
    return {
        "what": "one random half of the real table evaluated against the other half, with the same metrics",
        "rows": len(first),
        "fidelity": step("reference fidelity", lambda: column_quality(first, second, schema, all_pairs=True)),
        "detection": step("reference detection", lambda: detection(first, second, schema, seed=seed)),
        "privacy": step("reference privacy", lambda: privacy(second, first, schema, holdout, seed=seed)),
    }


def _attach_reference_pairs(report: dict) -> None:
    """Put each worst pair's real-vs-real error beside its synthetic error, so a pair that is noisy between
    real samples too (many levels, few rows) is told apart from one the model got wrong."""
    reference_fidelity = report["reference"]["fidelity"]
    reference_pairs = {frozenset(pair["columns"]): pair["error"] for pair in reference_fidelity["worst_pairs"]}
    for pair in report["fidelity"]["worst_pairs"]:
        pair["reference_error"] = reference_pairs.get(frozenset(pair["columns"]))
    reference_fidelity["worst_pairs"] = reference_fidelity["worst_pairs"][:WORST_PAIRS]
