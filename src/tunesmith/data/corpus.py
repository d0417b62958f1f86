"""A retrieval corpus: documents with an id and a text (JSONL, CSV, Parquet; `.jsonl.gz` too), what an
embedding run searches in `tunesmith eval --corpus` and `predict --corpus`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.readers import FileFormat, read_records, require_columns, require_field
from tunesmith.errors import DataError


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def read_corpus(
    path: Path, fmt: str | FileFormat = "auto", id_column: str = "id", text_column: str = "text"
) -> list[Document]:
    """Every document of the file; a record without an id or a text, an id that is not a string or an integer,
    an empty text, and an id given twice are errors naming the line."""
    documents: list[Document] = []
    seen: dict[str, int] = {}
    records = require_columns(read_records(path, fmt), {"id column": id_column, "text column": text_column})
    for record in records:
        raw = require_field(record, id_column)
        if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
            raise record.error(f'document id in "{id_column}" must be a string or an integer, got {raw!r}')
        text = require_field(record, text_column)
        if not isinstance(text, str) or not text.strip():
            raise record.error(f'document {raw!r} has no text in "{text_column}"', "empty")
        key = str(raw).strip()
        if key in seen:
            raise record.error(
                f"document id {key!r} was given already ({record.unit} {seen[key]})", "duplicates"
            )
        seen[key] = record.line
        documents.append(Document(key, text))
    if not documents:
        raise DataError(Path(path), None, "the corpus has no documents", kind="no_rows")
    return documents
