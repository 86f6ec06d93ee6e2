"""Fitted, JSON-serialisable maps between a DataFrame and the two arrays the diffusion model sees.

* ``x_num`` ``[N, D_num]`` float32: one standard-normal-ish coordinate per numeric column, through a quantile
  transform to N(0, 1) (TabDDPM, Kotelnikov et al. 2023, Sec. 4: "QuantileTransformer ... normal").
* ``x_cat`` ``[N, D_cat]`` int64: one token per categorical column, plus one present/missing token per numeric
  column that has missing values, so missingness is modelled jointly with the values instead of dropped.

Decoding inverts every step and restores the input's dtypes, category labels, integer rounding, numeric bounds,
decimal places and datetime text formats. Everything is stored as plain JSON (no pickles).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from .schema import CATEGORICAL_KINDS, NUMERIC_KINDS, ColumnSpec, Schema, TabularDataWarning

NUM_QUANTILES = 1000
# Like scikit-learn's QuantileTransformer: keep ranks away from 0 and 1 so the normal scores stay finite (|z| < 5.2).
RANK_CLIP = 1e-7
MAX_CATEGORIES = 200
MAX_DECIMALS = 6
SECONDS_PER = {"day": 86400.0, "hour": 3600.0, "minute": 60.0, "second": 1.0}
EPOCH = pd.Timestamp(0)


def _python(value):
    """numpy scalar -> plain Python scalar, so category labels survive a JSON round trip with their type."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class QuantileNormal:
    """Monotone map x -> z = Phi^{-1}(F_n(x)) with F_n the empirical CDF at ``len(quantiles)`` grid points.

    Ties (point masses such as many exact zeros) map to the mean of their rank interval, as in scikit-learn's
    ``QuantileTransformer``; the inverse maps the whole interval back onto the tied value, so point masses return.
    """

    quantiles: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, *, num_quantiles: int = NUM_QUANTILES) -> QuantileNormal:
        levels = np.linspace(0.0, 1.0, min(num_quantiles, len(values)))
        return cls(np.quantile(values, levels).tolist())

    def forward(self, x: np.ndarray) -> np.ndarray:
        q = np.asarray(self.quantiles)
        p = np.linspace(0.0, 1.0, len(q))
        # Interpolating from both ends and averaging resolves flat runs of repeated quantiles to their middle rank.
        rank = 0.5 * (np.interp(x, q, p) - np.interp(-x, -q[::-1], -p[::-1]))
        return ndtri(np.clip(rank, RANK_CLIP, 1.0 - RANK_CLIP))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        q = np.asarray(self.quantiles)
        return np.interp(ndtr(z), np.linspace(0.0, 1.0, len(q)), q)


def _decimals(values: np.ndarray) -> int | None:
    """Fewest decimal places (<= MAX_DECIMALS) that represent every value, or None for full precision."""
    for places in range(MAX_DECIMALS + 1):
        scaled = values * 10.0**places
        if np.allclose(scaled, np.round(scaled), rtol=0.0, atol=1e-6):
            return places
    return None


def _datetime_resolution(seconds: np.ndarray) -> str:
    """Coarsest unit (day/hour/minute/second) of which every timestamp is a whole multiple."""
    for unit, length in SECONDS_PER.items():
        if np.all(np.mod(seconds, length) == 0):
            return unit
    return "second"


def column_as_seconds(series: pd.Series, spec: ColumnSpec) -> np.ndarray:
    parsed = pd.to_datetime(series, format=spec.datetime_format, errors="coerce")
    bad = parsed.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"column {spec.name!r} is datetime (format {spec.datetime_format!r}) but row {row} holds "
            f"{series.iloc[row]!r}; fix the value or declare the column categorical in a schema file"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return ((parsed - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def column_as_float(series: pd.Series, spec: ColumnSpec) -> np.ndarray:
    if spec.kind == "datetime":
        return column_as_seconds(series, spec)
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"column {spec.name!r} is {spec.kind} but row {row} holds {series.iloc[row]!r}, not a number; "
            f"fix the value or declare the column categorical in a schema file"
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class NumericCodec:
    """A continuous, integer or datetime column <-> one normal-score coordinate (+ a missing token if needed)."""

    name: str
    quantile: QuantileNormal
    low: float
    high: float
    round_to: int | None  # decimal places to round to (0 for integers and datetimes in their unit)
    unit_seconds: float = 1.0  # datetimes: seconds per modelled unit
    has_missing: bool = False

    @classmethod
    def fit(cls, series: pd.Series, spec: ColumnSpec) -> NumericCodec:
        values = column_as_float(series, spec)
        present = values[np.isfinite(values)]
        unit_seconds = 1.0
        if spec.kind == "datetime":
            unit_seconds = SECONDS_PER[_datetime_resolution(present)]
            present = present / unit_seconds
        round_to = 0 if spec.kind in ("integer", "datetime") else _decimals(present)
        return cls(
            name=spec.name,
            quantile=QuantileNormal.fit(present),
            low=float(present.min()),
            high=float(present.max()),
            round_to=round_to,
            unit_seconds=unit_seconds,
            has_missing=bool(np.isnan(values).any()),
        )

    def encode(self, series: pd.Series, spec: ColumnSpec) -> tuple[np.ndarray, np.ndarray]:
        """Normal scores (0 where missing: the missing token carries that row) and a 0/1 missing indicator."""
        values = column_as_float(series, spec) / self.unit_seconds
        missing = np.isnan(values)
        scores = np.where(missing, 0.0, self.quantile.forward(np.where(missing, self.low, values)))
        return scores, missing.astype(np.int64)

    def value_to_score(self, value: float) -> float:
        return float(self.quantile.forward(np.array([value / self.unit_seconds]))[0])

    def decode(self, scores: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
        values = np.clip(self.quantile.inverse(scores), self.low, self.high)
        if self.round_to is not None:
            values = np.round(values, self.round_to)
        values = values * self.unit_seconds
        if missing is not None:
            values = np.where(missing.astype(bool), np.nan, values)
        return values


@dataclass
class CategoricalCodec:
    """A categorical/boolean column <-> one token. Tokens: the levels by frequency, then an optional ``rare``
    token pooling the levels past ``max_categories`` (decoded by drawing one of them with its training frequency),
    then an optional ``missing`` token."""

    name: str
    levels: list
    rare_levels: list = field(default_factory=list)
    rare_weights: list = field(default_factory=list)
    has_missing: bool = False

    @classmethod
    def fit(cls, series: pd.Series, *, max_categories: int = MAX_CATEGORIES) -> CategoricalCodec:
        counts = series.value_counts(dropna=True)  # sorted by frequency, most common first
        labels = [_python(label) for label in counts.index]
        if len(labels) > max_categories:
            warnings.warn(
                f"column {series.name!r} has {len(labels)} levels: the {max_categories - 1} most frequent are "
                f"modelled and the other {len(labels) - max_categories + 1} pooled into one token that is decoded "
                f"by drawing one of them with its training frequency",
                TabularDataWarning,
                stacklevel=3,
            )
            keep = max_categories - 1
            rare_counts = counts.to_numpy()[keep:]
            return cls(
                name=str(series.name),
                levels=labels[:keep],
                rare_levels=labels[keep:],
                rare_weights=(rare_counts / rare_counts.sum()).tolist(),
                has_missing=bool(series.isna().any()),
            )
        return cls(name=str(series.name), levels=labels, has_missing=bool(series.isna().any()))

    @property
    def rare_token(self) -> int | None:
        return len(self.levels) if self.rare_levels else None

    @property
    def missing_token(self) -> int | None:
        return len(self.levels) + bool(self.rare_levels) if self.has_missing else None

    @property
    def num_tokens(self) -> int:
        return len(self.levels) + bool(self.rare_levels) + self.has_missing

    def _token_of(self) -> dict:
        lookup = {level: index for index, level in enumerate(self.levels)}
        lookup.update({level: self.rare_token for level in self.rare_levels})
        return lookup

    def encode(self, series: pd.Series) -> np.ndarray:
        tokens = series.map(self._token_of())
        unseen = tokens.isna() & series.notna()
        if unseen.any():
            row = int(np.flatnonzero(unseen.to_numpy())[0])
            raise ValueError(f"column {self.name!r}: value {series.iloc[row]!r} (row {row}) was not seen in training")
        if self.has_missing:
            tokens = tokens.fillna(self.missing_token)
        return tokens.to_numpy(dtype=np.int64)

    def token_of_value(self, value) -> int:
        """Token for a label given as a Python value or as text (e.g. ``"1"`` for the level 1.0 or True)."""
        lookup = self._token_of()
        if value in lookup:
            return lookup[value]
        text = str(value).strip()
        for level, token in lookup.items():
            if str(level) == text or (isinstance(level, bool) and text.lower() == str(level).lower()):
                return token
            if isinstance(level, (int, float)) and not isinstance(level, bool):
                try:
                    if float(text) == level:
                        return token
                except ValueError:
                    pass
        shown = [*self.levels, *self.rare_levels][:10]
        raise ValueError(f"column {self.name!r} has no value {value!r}; known values include {shown}")

    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        labels = np.empty(len(tokens), dtype=object)
        labels[:] = np.nan
        for token, level in enumerate(self.levels):
            labels[tokens == token] = level
        if self.rare_levels:
            rare = tokens == self.rare_token
            picks = rng.choice(len(self.rare_levels), size=int(rare.sum()), p=self.rare_weights)
            labels[rare] = np.asarray(self.rare_levels, dtype=object)[picks]
        return labels


def _restore_dtype(values: np.ndarray, spec: ColumnSpec, categories: list | None) -> pd.Series:
    """Give decoded values the dtype (and, for datetimes read as text, the format) of the input column."""
    dtype = spec.dtype
    if spec.kind == "datetime":
        stamps = pd.to_datetime(pd.Series(values, dtype="float64"), unit="s")
        if spec.datetime_format is not None:
            text = stamps.dt.strftime(spec.datetime_format)
            return text.where(stamps.notna(), np.nan).astype(object)
        if "UTC" in dtype or "," in dtype:  # tz-aware input: values were modelled in UTC
            tz = dtype.split(",", 1)[1].strip(" ]")
            return stamps.dt.tz_localize("UTC").dt.tz_convert(tz)
        return stamps.astype(dtype)
    if dtype == "category":
        return pd.Series(pd.Categorical(values, categories=categories))
    if dtype in ("object", "string", "str"):
        return pd.Series(values, dtype=object if dtype != "string" else "string")
    if dtype == "bool" and not pd.isna(values).any():
        return pd.Series(values.astype(bool))
    if dtype[0] in "ui" and pd.isna(values).any():  # numpy ints cannot hold NaN; only possible if the schema changed
        return pd.Series(values, dtype="float64")
    return pd.Series(values).astype(dtype)


@dataclass
class TableCodec:
    """The whole table: column order, codecs, and the layout of ``x_num`` / ``x_cat``."""

    schema: Schema
    numeric: list[NumericCodec]
    categorical: list[CategoricalCodec]
    id_starts: dict  # id column -> first integer key for synthetic rows
    category_dtypes: dict  # pandas "category" columns -> their categories, restored on output

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: Schema, *, max_categories: int = MAX_CATEGORIES) -> TableCodec:
        numeric, categorical, id_starts, category_dtypes = [], [], {}, {}
        for spec in schema.columns:
            series = frame[spec.name]
            if isinstance(series.dtype, pd.CategoricalDtype):
                category_dtypes[spec.name] = [_python(level) for level in series.cat.categories]
                series = series.astype(object)
            if spec.kind in NUMERIC_KINDS:
                numeric.append(NumericCodec.fit(series, spec))
            elif spec.kind in CATEGORICAL_KINDS:
                categorical.append(CategoricalCodec.fit(series, max_categories=max_categories))
            elif spec.kind == "id":
                numbers = pd.to_numeric(series, errors="coerce")
                id_starts[spec.name] = int(numbers.max()) + 1 if numbers.notna().all() else 0
        # Present/missing tokens of numeric columns come after the categorical columns' tokens.
        for codec in numeric:
            if codec.has_missing:
                categorical.append(CategoricalCodec(name=f"{codec.name}:missing", levels=[False, True]))
        return cls(schema, numeric, categorical, id_starts, category_dtypes)

    @property
    def category_sizes(self) -> list[int]:
        return [codec.num_tokens for codec in self.categorical]

    def missing_index(self, name: str) -> int | None:
        """Position in ``x_cat`` of numeric column ``name``'s present/missing token (None if never missing)."""
        for index, codec in enumerate(self.categorical):
            if codec.name == f"{name}:missing":
                return index
        return None

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        missing_columns = [spec.name for spec in self.schema.columns if spec.modelled and spec.name not in frame]
        if missing_columns:
            raise ValueError(f"the table lacks columns the model was fitted on: {missing_columns}")
        x_num = np.zeros((len(frame), len(self.numeric)), dtype=np.float32)
        x_cat = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)
        cat_index = {codec.name: index for index, codec in enumerate(self.categorical)}
        for index, codec in enumerate(self.numeric):
            series = frame[codec.name]
            if codec.name in self.category_dtypes:  # a pandas category column of numbers: encode its values
                series = series.astype(object)
            scores, missing = codec.encode(series, self.schema[codec.name])
            x_num[:, index] = scores
            if codec.has_missing:
                x_cat[:, cat_index[f"{codec.name}:missing"]] = missing
        for index, codec in enumerate(self.categorical):
            if codec.name in frame:
                x_cat[:, index] = codec.encode(frame[codec.name].astype(object))
        return x_num, x_cat

    def decode(self, x_num: np.ndarray, x_cat: np.ndarray, *, rng: np.random.Generator,
               id_offset: int = 0) -> pd.DataFrame:
        num_rows = len(x_num)
        columns = {}
        numeric = {codec.name: (index, codec) for index, codec in enumerate(self.numeric)}
        categorical = {codec.name: (index, codec) for index, codec in enumerate(self.categorical)}
        for spec in self.schema.columns:
            if spec.name in numeric:
                index, codec = numeric[spec.name]
                missing_index = self.missing_index(spec.name)
                missing = None if missing_index is None else x_cat[:, missing_index]
                values = codec.decode(x_num[:, index].astype(np.float64), missing)
            elif spec.name in categorical:
                index, codec = categorical[spec.name]
                values = codec.decode(x_cat[:, index], rng)
            elif spec.kind == "id":
                keys = self.id_starts[spec.name] + id_offset + np.arange(num_rows)
                is_text = spec.dtype in ("object", "string", "str")
                values = np.array([f"{spec.name}-{key}" for key in keys], dtype=object) if is_text else keys
            else:  # empty / ignore: written back as all missing
                values = np.full(num_rows, np.nan, dtype=object if spec.dtype == "object" else np.float64)
            columns[spec.name] = _restore_dtype(values, spec, self.category_dtypes.get(spec.name))
        return pd.DataFrame(columns)

    def condition(self, name: str, value) -> list[tuple[str, int, float]]:
        """Fixed coordinates for "column = value": ``("num", index, score)`` / ``("cat", index, token)`` entries."""
        if name not in self.schema.names:
            raise ValueError(f"unknown column {name!r} in the condition; columns are {self.schema.names}")
        spec = self.schema[name]
        for index, codec in enumerate(self.categorical):
            if codec.name == name:
                return [("cat", index, codec.token_of_value(value))]
        for index, codec in enumerate(self.numeric):
            if codec.name == name:
                number = column_as_float(pd.Series([value], dtype=object), spec)[0]
                if not np.isfinite(number):
                    raise ValueError(f"column {name!r}: cannot condition on a missing value {value!r}")
                low, high = codec.low * codec.unit_seconds, codec.high * codec.unit_seconds
                if not low <= number <= high:
                    raise ValueError(f"column {name!r}: {value!r} lies outside the training range [{low}, {high}]")
                fixed = [("num", index, codec.value_to_score(number))]
                missing_index = self.missing_index(name)
                if missing_index is not None:
                    fixed.append(("cat", missing_index, 0))  # a given value means "present"
                return fixed
        raise ValueError(f"column {name!r} is {spec.kind} and not modelled, so it cannot be conditioned on")

    def to_dict(self) -> dict:
        return {
            "schema": self.schema.to_dict(),
            "numeric": [asdict(codec) for codec in self.numeric],
            "categorical": [asdict(codec) for codec in self.categorical],
            "id_starts": self.id_starts,
            "category_dtypes": self.category_dtypes,
        }

    @classmethod
    def from_dict(cls, payload: dict) -> TableCodec:
        numeric = []
        for entry in payload["numeric"]:
            entry = dict(entry)
            entry["quantile"] = QuantileNormal(**entry["quantile"])
            numeric.append(NumericCodec(**entry))
        return cls(
            schema=Schema.from_dict(payload["schema"]),
            numeric=numeric,
            categorical=[CategoricalCodec(**entry) for entry in payload["categorical"]],
            id_starts=payload["id_starts"],
            category_dtypes=payload["category_dtypes"],
        )
