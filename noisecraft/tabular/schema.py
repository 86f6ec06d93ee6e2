"""Column types of a table: inference from the data, and overrides from a JSON/YAML schema file.

The kinds follow the split used by TabDDPM (Kotelnikov et al. 2023, Sec. 3) and TabDiff (Shi et al. 2025, Sec. 3):
numerical columns go through Gaussian diffusion, categorical ones through a discrete (here masked) diffusion.
Finer kinds only change how values are mapped in and out:

* ``continuous``  floats; quantile-normalised.
* ``integer``     whole numbers with many distinct values (rounded back after sampling).
* ``datetime``    timestamps, modelled as numbers (seconds) and formatted back as in the input.
* ``categorical`` strings, and numbers with few distinct values (their exact values are kept as labels).
* ``boolean``     two-level categorical, written back as booleans.
* ``id``          unique keys: not modelled (they carry no joint statistics and would leak rows); fresh keys are
                  generated on output.
* ``empty``       all values missing: not modelled; written back as all missing.
* ``ignore``      set only by a schema file: not modelled, written back as all missing.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

NUMERIC_KINDS = ("continuous", "integer", "datetime")
CATEGORICAL_KINDS = ("categorical", "boolean")
UNMODELLED_KINDS = ("id", "empty", "ignore")
KINDS = NUMERIC_KINDS + CATEGORICAL_KINDS + UNMODELLED_KINDS

# Numbers with at most this many distinct values are categorical (e.g. a 1-5 rating, a 0/1 target).
MAX_NUMERIC_LEVELS = 20
ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key)$|[a-z]Id$|[a-z]ID$|^index$", re.IGNORECASE)
BOOLEAN_STRINGS = {"true", "false"}
# A text column whose present values are numbers in at least this share is a numeric column with stray text.
MIN_NUMERIC_SHARE = 0.8
SHOWN_VALUES = 5  # stray values quoted in a warning


class TabularDataWarning(UserWarning):
    """A column was dropped, excluded or simplified; the message names it and says why."""


@dataclass
class ColumnSpec:
    """One input column: its kind and what is needed to write it back exactly as it came in."""

    name: str
    kind: str
    dtype: str  # pandas dtype of the input column, restored on output
    datetime_format: str | None = None  # strftime format when datetimes came in as text

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: unknown kind {self.kind!r}; choose one of {list(KINDS)}")

    @property
    def modelled(self) -> bool:
        return self.kind not in UNMODELLED_KINDS


@dataclass
class Schema:
    columns: list[ColumnSpec]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def __getitem__(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"no column named {name!r}; columns are {self.names}")

    def to_dict(self) -> dict:
        return {"columns": [asdict(column) for column in self.columns]}

    @classmethod
    def from_dict(cls, payload: dict) -> Schema:
        return cls([ColumnSpec(**column) for column in payload["columns"]])


def _is_integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(np.floor(values) == values))


def _datetime_format(values: pd.Series) -> str | None:
    """The strftime format every value of a text column parses with, or None if it is not a datetime column."""
    first = str(values.iloc[0])
    if not re.search(r"\d", first) or not re.search(r"[-/:T ]", first):
        return None  # plain words or bare numbers are never dates
    fmt = guess_datetime_format(first)
    if fmt is None:
        return None
    parsed = pd.to_datetime(values.astype(str), format=fmt, errors="coerce")
    return fmt if parsed.notna().all() else None


def infer_column(series: pd.Series, *, max_numeric_levels: int = MAX_NUMERIC_LEVELS) -> ColumnSpec:
    """Infer one column's kind from its values (and, for keys, its name)."""
    name, dtype = str(series.name), str(series.dtype)
    present = series.dropna()
    if len(present) == 0:
        return ColumnSpec(name, "empty", dtype)
    if pd.api.types.is_bool_dtype(series.dtype):
        return ColumnSpec(name, "boolean", dtype)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return ColumnSpec(name, "datetime", dtype)
    num_unique = present.nunique()
    all_unique = num_unique == len(present) and len(present) >= 10
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = present.to_numpy(dtype=np.float64)
        integral = _is_integral(values)
        if integral and all_unique and ID_NAME.search(name):
            return ColumnSpec(name, "id", dtype)
        if num_unique <= max_numeric_levels and (integral or num_unique <= 0.05 * len(present)):
            return ColumnSpec(name, "categorical", dtype)
        return ColumnSpec(name, "integer" if integral else "continuous", dtype)
    # Text (object / string / category dtypes).
    if all(isinstance(value, (bool, np.bool_)) for value in present) or set(
        present.astype(str).str.lower().unique()
    ) <= BOOLEAN_STRINGS:
        return ColumnSpec(name, "boolean", dtype)
    fmt = _datetime_format(present)
    if fmt is not None:
        return ColumnSpec(name, "datetime", dtype, datetime_format=fmt)
    if all_unique and not isinstance(series.dtype, pd.CategoricalDtype):
        return ColumnSpec(name, "id", dtype)
    return ColumnSpec(name, "categorical", dtype)


def stray_text_values(series: pd.Series) -> pd.Series:
    """The values that keep a mostly numeric text column from being numeric (empty if it is not such a column).

    One typo ("12..5", "n/a?", "-") turns a numeric column into text when pandas reads it, and inference then
    makes it categorical (or an identifier) without a word; these values are what the user has to fix.
    """
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return series.iloc[:0]
    present = series.dropna()
    if len(present) == 0 or isinstance(series.dtype, pd.CategoricalDtype):
        return series.iloc[:0]
    levels = pd.Series(present.unique())  # distinct values: far fewer than rows in a categorical column
    numeric_levels = pd.to_numeric(levels, errors="coerce").notna().to_numpy()
    if not numeric_levels.any() or numeric_levels.all():
        return series.iloc[:0]
    is_stray = present.isin(levels[~numeric_levels])
    return present[is_stray] if 1 - is_stray.mean() >= MIN_NUMERIC_SHARE else series.iloc[:0]


def _where(stray: pd.Series, frame: pd.DataFrame) -> list[str]:
    """``'abc' (line 5)`` for a frame read by ``read_table`` whose rows map onto lines, else ``'abc' (row 3)``."""
    first_line = frame.attrs.get("first_line")
    index = frame.index
    by_line = first_line is not None and isinstance(index, pd.RangeIndex) and (index.start, index.step) == (0, 1)
    places = []
    for label, value in stray.iloc[:SHOWN_VALUES].items():
        place = f"line {label + first_line}" if by_line else f"row {label}"
        places.append(f"{value!r} ({place})")
    return places


def _warn_stray_text(name: str, kind: str, stray: pd.Series, frame: pd.DataFrame) -> None:
    """Say which values made a numeric column text, where they are, and how to fix it."""
    source = frame.attrs.get("source")
    where = f"column {name!r} of {source}" if source else f"column {name!r}"
    more = f" and {len(stray) - SHOWN_VALUES} more" if len(stray) > SHOWN_VALUES else ""
    treated = "an identifier (excluded)" if kind == "id" else kind
    warnings.warn(
        f"{where} is numeric except {len(stray)} text value(s): {', '.join(_where(stray, frame))}{more}; so it is "
        f"treated as {treated}. Fix or blank these values, or if the column is text declare it in a schema file "
        f'(e.g. {{"{name}": "categorical"}}) to silence this warning',
        TabularDataWarning,
        stacklevel=3,
    )


def load_schema_file(path: str | Path) -> dict:
    """Read a schema override file (JSON, or YAML for .yaml/.yml) into ``{column: {"kind": ..., ...}}``.

    Accepted forms: ``{"columns": {"age": "integer", "start": {"kind": "datetime", "format": "%Y-%m-%d"}}}``
    or the same mapping without the ``columns`` level.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such schema file: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # only needed for YAML schemas

        payload = yaml.safe_load(text)
    else:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); YAML schemas need a .yaml suffix") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a mapping of column name -> kind, got {type(payload).__name__}")
    columns = payload.get("columns", payload)
    overrides = {}
    for name, entry in columns.items():
        entry = {"kind": entry} if isinstance(entry, str) else dict(entry)
        if "kind" not in entry:
            raise ValueError(f"{path}: column {name!r} needs a 'kind' (one of {list(KINDS)})")
        overrides[str(name)] = entry
    return overrides


def infer_schema(
    frame: pd.DataFrame,
    *,
    overrides: dict | str | Path | None = None,
    max_numeric_levels: int = MAX_NUMERIC_LEVELS,
) -> Schema:
    """Infer every column's kind, apply overrides (a mapping or a schema file) and warn about unmodelled columns."""
    if isinstance(overrides, (str, Path)):
        overrides = load_schema_file(overrides)
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(map(str, frame.columns)))
    if unknown:
        raise ValueError(f"schema names columns not in the data: {unknown}; the data has {list(frame.columns)}")
    columns = []
    for name in frame.columns:
        spec = infer_column(frame[name], max_numeric_levels=max_numeric_levels)
        if str(name) in overrides:
            entry = overrides[str(name)]
            spec = ColumnSpec(
                spec.name,
                entry["kind"],
                spec.dtype,
                datetime_format=entry.get("format", spec.datetime_format),
            )
        elif spec.kind in ("categorical", "id") and len(stray := stray_text_values(frame[name])):
            _warn_stray_text(str(name), spec.kind, stray, frame)
        elif spec.kind == "empty":
            warnings.warn(
                f"column {name!r} is entirely missing: dropped from the model (written back as all missing)",
                TabularDataWarning,
                stacklevel=2,
            )
        elif spec.kind == "id":
            warnings.warn(
                f"column {name!r} looks like an identifier (every value unique): excluded from the model; "
                f"synthetic rows get fresh keys. Override with a schema file if it is a real feature",
                TabularDataWarning,
                stacklevel=2,
            )
        columns.append(spec)
    schema = Schema(columns)
    if not any(column.modelled for column in schema.columns):
        raise ValueError(
            f"no column can be modelled: kinds are {[(c.name, c.kind) for c in schema.columns]}; "
            f"the table needs at least one numeric, categorical, boolean or datetime column"
        )
    return schema
