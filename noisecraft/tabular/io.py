"""Reading and writing tables (CSV, TSV, Parquet) with errors that name the file, line or column at fault.

pandas' own messages for malformed text ("Error tokenizing data. C error ...", a bare ``UnicodeDecodeError``)
do not tell a user which line to fix, so a CSV is first scanned once with the standard ``csv`` module: that scan
finds empty files, header-only files, undecodable bytes and rows whose field count differs from the header's.

The delimiter is detected from the first lines unless given (``sep=``, CLI ``--sep``): European spreadsheet exports
are ``;``-separated even when named ``.csv``, and reading them with ``,`` gives one column that would otherwise fit
silently (every row one category).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import warnings
from pathlib import Path

import pandas as pd

from .schema import TabularDataWarning

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}
PARQUET_SUFFIXES = {".parquet", ".pq"}
DELIMITERS = (",", ";", "\t", "|")  # the candidates of detection, most common first
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
SNIFF_LINES = 50  # lines read to detect the delimiter


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


def show_delimiter(delimiter: str) -> str:
    """A delimiter as a user would type it after ``--sep`` (a tab is invisible when printed)."""
    return "\\t" if delimiter == "\t" else delimiter


def parse_sep(sep: str | None) -> str | None:
    """Accept ``;``, ``\\t``, ``tab``, ``semicolon`` ...: shells make a literal tab hard to type."""
    if sep is None:
        return None
    delimiter = DELIMITER_NAMES.get(sep.lower(), sep)
    if len(delimiter) != 1:
        raise ValueError(f"--sep must be one character (or tab, comma, semicolon, pipe), got {sep!r}")
    return delimiter


def _consistent_field_count(lines: list[str], delimiter: str) -> int:
    """How many fields every sniffed line splits into with ``delimiter``; 0 if the header has one field or the
    lines disagree (the last line may be cut short, so it is left out when more than two were read)."""
    rows = [row for row in csv.reader(lines, delimiter=delimiter) if row]
    if len(rows) > 2:
        rows = rows[:-1]
    counts = {len(row) for row in rows}
    return counts.pop() if len(counts) == 1 and len(rows[0]) > 1 else 0


def sniff_delimiter(path: Path, *, default: str, encoding: str) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields, the suffix's default
    preferred; the default when none does (the full scan then reports the first inconsistent line)."""
    with path.open("r", encoding=encoding, errors="replace", newline="") as handle:
        lines = list(itertools.islice(handle, SNIFF_LINES))
    counts = {delimiter: _consistent_field_count(lines, delimiter) for delimiter in DELIMITERS} if lines else {}
    if counts.get(default):
        return default
    best = max(counts, key=counts.get, default=default)
    return best if counts.get(best) else default


def _one_column_hint(header: list[str]) -> str | None:
    """The delimiter a one-column header most likely hides ('a;b;c' read with ',')."""
    if len(header) != 1:
        return None
    return next((delimiter for delimiter in DELIMITERS[1:] + (",",) if delimiter in header[0]), None)


def _check_one_column(path: Path, header: list[str], delimiter: str, encoding: str) -> None:
    """A one-column table whose header holds another delimiter was read with the wrong one: an error when the
    first lines split evenly on that delimiter (certainly a wrong ``--sep``), else a warning (a header like
    'notes; free text' is possible)."""
    hidden = _one_column_hint(header)
    if hidden is None:
        return
    message = (f"{path}: read with sep {show_delimiter(delimiter)!r} the table has one column named {header[0]!r}, "
               f"which contains {show_delimiter(hidden)!r}; pass sep={show_delimiter(hidden)!r} "
               f"(CLI: --sep '{show_delimiter(hidden)}')")
    with path.open("r", encoding=encoding, errors="replace", newline="") as handle:
        lines = list(itertools.islice(handle, SNIFF_LINES))
    if _consistent_field_count(lines, hidden):
        raise ValueError(message)
    warnings.warn(message, TabularDataWarning, stacklevel=4)


def _check_encoding(encoding: str) -> None:
    """An unknown codec name would otherwise surface as a bare ``LookupError`` traceback."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}; use e.g. utf-8, latin-1 or cp1252") from None


def check_text_table(path: Path, *, delimiter: str, encoding: str) -> tuple[int, bool]:
    """Scan a delimited text file once; return its number of data rows and whether row i sits on line i + 2 (no
    blank lines or values spanning lines), or raise ``ValueError`` naming the line.

    Checks, in file order: the file is not empty, every line decodes, the header is not one column that holds
    another delimiter, every row has as many fields as the header (a ragged row would otherwise be silently padded
    with missing values or shift later columns), and at least one data row follows the header.
    """
    with path.open("rb") as handle:
        reader = csv.reader(_decoded_lines(handle, path, encoding), delimiter=delimiter)
        header = next(reader, None)
        if header is None or not any(field.strip() for field in header):
            raise ValueError(f"{path} is empty: expected a header line with column names followed by data rows")
        _check_one_column(path, header, delimiter, encoding)
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
                    f"{path}: line {reader.line_num} has {len(row)} fields but the header has {len(header)} "
                    f"(read as {show_delimiter(delimiter)!r}-separated); fix that row (an unquoted "
                    f"'{show_delimiter(delimiter)}' inside a value is a common cause) or pass the right --sep"
                )
        lines_match_rows = reader.line_num == num_rows + 1  # no blank lines or values spanning lines
    if num_rows == 0:
        raise ValueError(f"{path} has a header ({len(header)} columns) but no data rows")
    return num_rows, lines_match_rows


def _read_parquet(path: Path) -> pd.DataFrame:
    """``pd.read_parquet`` with pyarrow's multi-line errors turned into one line naming the file."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: expected a Parquet file with at least one row")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a readable Parquet file ({reason}); re-export it or save it as CSV") from None
    if frame.shape[1] == 0:
        raise ValueError(f"{path} has no columns")
    if len(frame) == 0:
        raise ValueError(f"{path} has columns {list(frame.columns)} but no rows")
    return frame


def _text_delimiter(path: Path, sep: str | None, encoding: str) -> str:
    """The given delimiter, or the detected one, announced when it is not the one the suffix implies."""
    delimiter = parse_sep(sep)
    if delimiter is not None:
        return delimiter
    default = TEXT_SUFFIXES[path.suffix.lower()]
    delimiter = sniff_delimiter(path, default=default, encoding=encoding)
    if delimiter != default:
        warnings.warn(
            f"read {path} as {show_delimiter(delimiter)!r}-separated (detected); pass --sep (Python: sep=) "
            f"to override",
            TabularDataWarning,
            stacklevel=3,
        )
    return delimiter


def read_table(path: str | Path, *, encoding: str = "utf-8", sep: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file into a DataFrame, validating it first (see ``check_text_table``).

    ``sep``: the delimiter of a text file; None detects it from the first lines (``,``, ``;``, tab or ``|``).
    The frame's ``attrs["source"]`` names the file, and ``attrs["first_line"]`` the line of row 0 when rows map
    one-to-one onto lines, so that later warnings (e.g. a stray text value in a numeric column) can cite lines.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass a .csv, .tsv or .parquet file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        frame = _read_parquet(path)
        frame.attrs["source"] = str(path)
        return frame
    if suffix not in TEXT_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")
    _check_encoding(encoding)
    delimiter = _text_delimiter(path, sep, encoding)
    num_rows, lines_match_rows = check_text_table(path, delimiter=delimiter, encoding=encoding)
    frame = pd.read_csv(path, sep=delimiter, encoding=encoding, low_memory=False)
    frame.attrs["source"] = str(path)
    if lines_match_rows and len(frame) == num_rows:
        frame.attrs["first_line"] = 2  # line 1 is the header
    return frame


def _warn_one_column_frame(frame: pd.DataFrame) -> None:
    """A DataFrame read elsewhere with the wrong delimiter has one column whose name holds the real one."""
    hidden = _one_column_hint([str(name) for name in frame.columns])
    if hidden is not None:
        warnings.warn(
            f"the DataFrame has one column named {str(frame.columns[0])!r}, which contains "
            f"{show_delimiter(hidden)!r}: it was probably read with the wrong delimiter; "
            f"read it with pd.read_csv(..., sep={show_delimiter(hidden)!r}) or noisecraft.tabular.read_table",
            TabularDataWarning,
            stacklevel=3,
        )


def as_frame(data, *, encoding: str = "utf-8", sep: str | None = None) -> pd.DataFrame:
    """Accept a DataFrame or a path, so that every API entry point takes either."""
    if isinstance(data, pd.DataFrame):
        if data.shape[1] == 0 or len(data) == 0:
            raise ValueError(f"the DataFrame is empty ({data.shape[0]} rows x {data.shape[1]} columns)")
        _warn_one_column_frame(data)
        return data
    if isinstance(data, (str, Path)):
        return read_table(data, encoding=encoding, sep=sep)
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
