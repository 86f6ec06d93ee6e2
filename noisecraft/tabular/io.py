"""Reading and writing tables (CSV, TSV, Parquet) with errors that name the file, line or column at fault.

pandas' own messages for malformed text ("Error tokenizing data. C error ...", a bare ``UnicodeDecodeError``)
do not tell a user which line to fix, so a CSV is first scanned once with the standard ``csv`` module: that scan
finds empty files, header-only files, undecodable bytes and rows whose field count differs from the header's.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pandas as pd

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}
PARQUET_SUFFIXES = {".parquet", ".pq"}


def _decoded_lines(handle, path: Path, encoding: str):
    """Yield the file's lines as text, turning a decoding failure into an error that names the line."""
    for line_number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as error:
            bad = raw[error.start : error.start + 1].hex()
            raise ValueError(
                f"{path}: line {line_number} is not valid {encoding} text (byte 0x{bad} at column {error.start + 1}); "
                f"re-save the file as UTF-8 or pass encoding='latin-1' (CLI: --encoding latin-1)"
            ) from None


def check_text_table(path: Path, *, delimiter: str, encoding: str) -> int:
    """Scan a delimited text file once; return its number of data rows or raise ``ValueError`` naming the line.

    Checks, in file order: the file is not empty, every line decodes, every row has as many fields as the header
    (a ragged row would otherwise be silently padded with missing values or shift later columns), and at least
    one data row follows the header.
    """
    with path.open("rb") as handle:
        reader = csv.reader(_decoded_lines(handle, path, encoding), delimiter=delimiter)
        header = next(reader, None)
        if header is None or not any(field.strip() for field in header):
            raise ValueError(f"{path} is empty: expected a header line with column names followed by data rows")
        if len(set(header)) != len(header):
            duplicates = sorted({name for name in header if header.count(name) > 1})
            raise ValueError(f"{path}: duplicate column names in the header: {duplicates}; rename them")
        num_rows = 0
        for row in reader:
            if not row:  # blank lines are skipped by pandas too
                continue
            num_rows += 1
            if len(row) != len(header):
                raise ValueError(
                    f"{path}: line {reader.line_num} has {len(row)} fields but the header has {len(header)}; "
                    f"fix that row (an unquoted '{delimiter}' inside a value is a common cause)"
                )
    if num_rows == 0:
        raise ValueError(f"{path} has a header ({len(header)} columns) but no data rows")
    return num_rows


def read_table(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file into a DataFrame, validating it first (see ``check_text_table``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass a .csv, .tsv or .parquet file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty: expected a Parquet file with at least one row")
        frame = pd.read_parquet(path)
        if frame.shape[1] == 0:
            raise ValueError(f"{path} has no columns")
        if len(frame) == 0:
            raise ValueError(f"{path} has columns {list(frame.columns)} but no rows")
        return frame
    if suffix not in TEXT_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")
    delimiter = TEXT_SUFFIXES[suffix]
    check_text_table(path, delimiter=delimiter, encoding=encoding)
    return pd.read_csv(path, sep=delimiter, encoding=encoding, low_memory=False)


def as_frame(data, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Accept a DataFrame or a path, so that every API entry point takes either."""
    if isinstance(data, pd.DataFrame):
        if data.shape[1] == 0 or len(data) == 0:
            raise ValueError(f"the DataFrame is empty ({data.shape[0]} rows x {data.shape[1]} columns)")
        return data
    if isinstance(data, (str, Path)):
        return read_table(data, encoding=encoding)
    raise TypeError(f"expected a pandas DataFrame or a path to a CSV/Parquet file, got {type(data).__name__}")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV/TSV or Parquet, chosen by the file suffix; parent folders are created."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in PARQUET_SUFFIXES:
        frame.to_parquet(path, index=False)
    elif suffix in TEXT_SUFFIXES:
        frame.to_csv(path, sep=TEXT_SUFFIXES[suffix], index=False)
    else:
        warnings.warn(f"{path}: unknown suffix {suffix!r}; writing CSV", stacklevel=2)
        frame.to_csv(path, index=False)
    return path
