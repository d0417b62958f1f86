"""The texts a user hands `tunesmith predict`, from wherever they come."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from tunesmith.data.readers import read_records, require_field, text_lines
from tunesmith.errors import DataError, UserError


def read_texts(
    texts: list[str] | None, file: Path | None, stdin: TextIO | None, text_column: str = "text"
) -> list[str]:
    """Texts to predict on: the arguments, a .txt file's lines, a CSV/JSONL/Parquet file's `text_column`, or
    stdin's lines (blank lines skipped); `-` alone reads stdin."""
    if file is not None:
        if texts:
            raise UserError("give texts or --file, not both")
        if file.suffix.lower() == ".txt":
            if not file.is_file():
                raise DataError(file, None, "file not found")
            return [line.rstrip("\r\n") for line in text_lines(file) if line.strip()]
        out = []
        for record in read_records(file):
            value = require_field(record, text_column)
            if not isinstance(value, str) or not value.strip():
                raise record.error(f'empty or non-text value in "{text_column}"')
            out.append(value)
        return out
    if texts and texts != ["-"]:
        return texts
    if stdin is None or stdin.isatty():
        raise UserError("no input: give texts, --file FILE, or pipe lines into stdin")
    return [line.rstrip("\n") for line in stdin if line.strip()]
