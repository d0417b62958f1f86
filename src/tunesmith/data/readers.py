"""Read records from CSV, TSV, JSONL and Parquet, each with the line (or row) it came from.

Every problem becomes a DataError naming the file and line; nothing here raises a bare traceback on bad
input. Files are streamed record by record. A CSV's delimiter (comma, semicolon, tab or pipe: Excel writes
semicolons in many locales) is detected from its first lines unless data.delimiter sets it.

By default the first problem raises. Given `on_error`, a problem confined to one record (a line that is not
JSON or not UTF-8, a CSV row with the wrong number of fields) is passed to it and reading goes on, so the data
check can list every bad line in one pass; a problem that makes the rest of the file unreadable (an unclosed
quote, a broken Parquet file) still raises.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

from tunesmith.data.conll import read_conll
from tunesmith.errors import DataError

OnError = Callable[[DataError], None]
Delimiter = Literal["auto", ",", ";", "\t", "|"]
NO_ROWS = "no usable rows (the file has a header or nothing at all)"
T = TypeVar("T")

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
}


DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_LINES = 50
"""Lines of a CSV file read to detect its delimiter."""


@dataclass(frozen=True)
class FileFormat:
    """How a data file is read: `kind` (csv, tsv, jsonl, parquet; `auto` goes by the extension) and, for
    CSV and TSV, the `delimiter` (`auto`: detected from the first lines)."""

    kind: str = "auto"
    delimiter: Delimiter = "auto"


def as_format(fmt: str | FileFormat) -> FileFormat:
    return fmt if isinstance(fmt, FileFormat) else FileFormat(fmt)


@dataclass(frozen=True)
class Record:
    """One input row: its fields and where it came from (line for text files, row for Parquet). `table`:
    the fields come from a header row that every record of the file shares (CSV, TSV, Parquet)."""

    path: Path
    line: int
    fields: dict[str, Any]
    unit: str = "line"
    table: bool = False

    def error(self, message: str, kind: str = "invalid") -> DataError:
        return DataError(self.path, self.line, message, self.unit, kind)


GZIPPED = ".gz"
"""A text format (CSV, TSV, JSON lines) compressed with gzip: `data.jsonl.gz` reads as `data.jsonl`."""


def open_bytes(path: Path) -> Any:
    """The file's bytes, unpacked on the fly where it is gzipped."""
    return gzip.open(path, "rb") if path.suffix.lower() == GZIPPED else path.open("rb")


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix == GZIPPED:
        suffix = Path(path.stem).suffix.lower()
        if FORMATS.get(suffix) == "parquet":
            suffix = ".parquet.gz"  # Parquet compresses inside the file
    found = FORMATS.get(suffix)
    if found is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(
            path,
            None,
            f"unknown file type {path.suffix!r}; use one of {known} or set data.format",
            kind="unreadable",
        )
    return found


def read_records(
    path: str | Path, fmt: str | FileFormat = "auto", on_error: OnError | None = None
) -> Iterator[Record]:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path, None, "file not found" if not path.exists() else "not a file", kind="unreadable"
        )
    fmt = as_format(fmt)
    kind = detect_format(path, fmt.kind)
    if kind in ("csv", "tsv"):
        yield from _read_csv(path, csv_delimiter(path, fmt), _raise if on_error is None else on_error)
    elif kind == "jsonl":
        yield from _read_jsonl(path, _raise if on_error is None else on_error)
    elif kind == "conll":
        handler = _raise if on_error is None else on_error
        for line, fields in read_conll(path, text_lines(path, handler), handler):
            yield Record(path, line, fields)
    else:
        yield from _read_parquet(path)


def csv_delimiter(path: Path, fmt: str | FileFormat = "auto") -> str:
    """The delimiter a CSV or TSV file is read with: data.delimiter when set, else the one of comma,
    semicolon, tab and pipe that splits the header into the most columns with every sampled row the same
    width (the extension's own delimiter wins a tie: comma for .csv, tab for .tsv)."""
    fmt = as_format(fmt)
    if fmt.delimiter != "auto":
        return fmt.delimiter
    default = "\t" if detect_format(path, fmt.kind) == "tsv" else ","
    try:
        with open_bytes(path) as handle:
            head = [raw.decode("utf-8", errors="replace") for raw in islice(handle, SNIFF_LINES)]
    except OSError:
        return default  # reading reports it
    if head and not head[-1].endswith("\n") and len(head) == SNIFF_LINES:
        head.pop()  # a cut line would count as a ragged row
    best, best_score = default, (-1.0, 0)
    for delimiter in sorted(DELIMITER_NAMES, key=lambda d: d != default):
        try:
            rows = [row for row in csv.reader(head, delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        same = sum(len(row) == width for row in rows[1:]) / max(len(rows) - 1, 1)
        if (same, width) > best_score:
            best, best_score = delimiter, (same, width)
    return best


def delimiter_note(path: Path, fmt: str | FileFormat = "auto") -> str | None:
    """How a CSV file is read when that is not the extension's own delimiter (None when it is, or for
    other formats): said by the data check, so a semicolon file is never silently read as one column."""
    fmt = as_format(fmt)
    try:
        kind = detect_format(path, fmt.kind)
    except DataError:
        return None
    if kind not in ("csv", "tsv") or not path.is_file():
        return None
    delimiter = csv_delimiter(path, fmt)
    if delimiter == ("\t" if kind == "tsv" else ","):
        return None
    how = "data.delimiter" if fmt.delimiter != "auto" else "detected; data.delimiter sets it"
    return f"read as {DELIMITER_NAMES[delimiter]}-separated ({how})"


def parse_each(
    records: Iterable[Record], parse: Callable[[Record], T], on_error: OnError | None
) -> Iterator[T]:
    """`parse` applied to each record; a record it refuses goes to `on_error` (or raises without one)."""
    for record in records:
        try:
            yield parse(record)
        except DataError as exc:
            if on_error is None:
                raise
            on_error(exc)


def _raise(error: DataError) -> None:
    raise error


def text_lines(path: Path, on_error: OnError = _raise) -> Iterator[str]:
    """Lines of a UTF-8 file (a BOM is fine); a decoding error or a NUL byte names its line and the likely
    encoding (after reporting it to `on_error`, the line is read with the bad bytes replaced or dropped)."""
    line_no = 0
    try:
        handle = open_bytes(path)
    except OSError as exc:
        raise DataError(path, None, f"cannot be read ({exc.strerror})", kind="unreadable") from None
    with handle:
        for raw in _lines_of(handle, path):
            line_no += 1
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                on_error(DataError(path, line_no, _encoding_problem(raw, exc), kind="encoding"))
                text = raw.decode("utf-8", errors="replace")
            if "\x00" in text:
                column = text.index("\x00") + 1
                problem = f"a NUL byte at column {column}: the file looks like UTF-16 or binary; save it as UTF-8 text"
                on_error(DataError(path, line_no, problem, kind="encoding"))
                text = text.replace("\x00", "")
            yield text


def _lines_of(handle: Any, path: Path) -> Iterator[bytes]:
    """The handle's lines; a gzip file cut short or not gzip at all is an error about the file."""
    try:
        yield from handle
    except (OSError, EOFError) as exc:
        raise DataError(path, None, f"cannot be unpacked ({exc})", kind="unreadable") from None


def _encoding_problem(raw: bytes, exc: UnicodeDecodeError) -> str:
    bad = raw[exc.start : exc.start + 1].hex()
    guess = "UTF-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw else "Latin-1/Windows-1252"
    return (
        f"not valid UTF-8 (byte 0x{bad} at column {exc.start + 1}); the file looks like {guess}: "
        f"save it as UTF-8"
    )


def _read_csv(path: Path, delimiter: str, on_error: OnError) -> Iterator[Record]:
    lines = text_lines(path, on_error)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, None, "the file is empty (no header row)", kind="no_rows") from None
    except csv.Error as exc:
        raise DataError(path, 1, f"malformed header ({exc})", kind="malformed") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise DataError(path, 1, f"duplicate column names: {', '.join(dupes)}", kind="malformed")
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "EOF" in str(exc) or "end of data" in str(exc):
                raise DataError(
                    path, start, "a quoted field opened on this line is never closed", kind="malformed"
                ) from None
            on_error(DataError(path, start, f"malformed CSV ({exc})", kind="malformed"))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            on_error(
                DataError(
                    path, start, f"{len(row)} fields, but the header has {len(header)}", kind="malformed"
                )
            )
            continue
        yield Record(path, start, dict(zip(header, row, strict=True)), table=True)


def _read_jsonl(path: Path, on_error: OnError) -> Iterator[Record]:
    for line_no, text in enumerate(text_lines(path, on_error), start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            on_error(
                DataError(
                    path, line_no, f"not valid JSON ({exc.msg} at column {exc.colno})", kind="malformed"
                )
            )
            continue
        except (ValueError, RecursionError) as exc:  # numbers too long for int(), nesting too deep
            on_error(DataError(path, line_no, f"not usable JSON ({exc})", kind="malformed"))
            continue
        if not isinstance(value, dict):
            on_error(
                DataError(
                    path, line_no, f"expected a JSON object, got {type(value).__name__}", kind="malformed"
                )
            )
            continue
        yield Record(path, line_no, value)


def _read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, None, f"not a readable Parquet file ({exc})", kind="unreadable") from None
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=4096):
            for fields in batch.to_pylist():
                row += 1
                yield Record(path, row, fields, unit="row", table=True)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            path, row + 1, f"unreadable Parquet data ({exc})", unit="row", kind="unreadable"
        ) from None


def require_columns(records: Iterable[Record], columns: dict[str, str]) -> Iterator[Record]:
    """`records`, with the columns a task reads (`columns`: config key -> column name) checked once for a
    file with a header row (CSV, TSV, Parquet): the ones missing are one error for the whole file that lists
    the columns found and the overrides that read others. JSON lines can differ from record to record and
    are checked one by one (require_field)."""
    it = iter(records)
    first = next(it, None)
    if first is None:
        return
    if first.table:
        missing = {key: name for key, name in columns.items() if name not in first.fields}
        if missing:
            raise _missing_columns(first.path, missing, [str(k) for k in first.fields], columns)
    yield first
    yield from it


def _missing_columns(
    path: Path, missing: dict[str, str], found: list[str], wanted: dict[str, str]
) -> DataError:
    """One file-level error: which columns are missing and the overrides that name the likely ones (a close
    spelling, or the one column no other key takes)."""
    free = [c for c in found if c not in wanted.values()]
    fixes = []
    for key, name in missing.items():
        guess = _closest(name, free)
        if guess is None and len(free) == len(missing) - len(fixes) == 1:
            guess = free[0]
        if guess is not None:
            free.remove(guess)
        fixes.append(f"{key}={guess or 'COLUMN'}")
    names = " and ".join(f'"{n}"' for n in missing.values())
    s = "s" if len(missing) > 1 else ""
    if len(found) == 1 and any(d in found[0] for d in ";\t|"):
        hint = " (one column: if the file uses another delimiter, set data.delimiter)"
    else:
        hint = ""
    return DataError(
        path,
        None,
        f"missing column{s} {names} (columns found: {', '.join(found)}){hint}; to read other columns, "
        f"add the override{s} {' '.join(fixes)}",
        kind="missing_field",
    )


def _closest(name: str, keys: list[str]) -> str | None:
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6) or [
        k for k in keys if k.casefold() == name.casefold()
    ]
    return close[0] if close else None


def require_field(record: Record, name: str) -> Any:
    """The field's value, or an error listing the fields the record does have."""
    if name not in record.fields:
        keys = [str(k) for k in record.fields]
        kind = "column" if record.path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq") else "field"
        close = _closest(name, keys)
        hint = f'; did you mean "{close}"?' if close else ""
        raise record.error(
            f'missing {kind} "{name}" ({kind}s found: {", ".join(keys)}){hint}', "missing_field"
        )
    return record.fields[name]
