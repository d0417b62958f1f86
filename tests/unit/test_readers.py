import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.config import ModelConfig
from tunesmith.data.readers import read_records
from tunesmith.errors import DataError
from tunesmith.tasks.classification import Classification, ClassificationParams


def task(**kw) -> Classification:
    return Classification(ClassificationParams(**kw), ModelConfig())


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_csv_records_carry_their_starting_line(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nhello,a\n"two\nlines",b\n\nlast,a\n')
    records = list(read_records(path))
    assert [r.line for r in records] == [2, 3, 6]
    assert records[1].fields == {"text": "two\nlines", "label": "b"}


def test_unclosed_quote_points_at_the_line_where_it_opened(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nok,a\n"never closed,b\nmore,a\nrows,b\n')
    with pytest.raises(DataError, match=r"^d.csv line 3: a quoted field opened on this line is never closed"):
        list(read_records(path))


def test_wrong_field_count(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nok,a\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"d.csv line 3: 3 fields, but the header has 2"):
        list(read_records(path))


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path, "d.csv", "body,category\nhello,a\n")
    with pytest.raises(
        DataError, match=r'd.csv line 2: missing column "text" \(columns found: body, category\)'
    ):
        task().read(path, "auto")
    assert len(task(text_column="body", label_column="category").read(path, "auto")) == 1


def test_wrong_encoding_names_line_and_likely_encoding(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nfine,a\ncaf\xe9,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"d.csv line 3: not valid UTF-8 .*Latin-1"):
        list(read_records(path))


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path, "d.csv", "\ufefftext,label\nhi,a\n")
    assert list(read_records(path))[0].fields == {"text": "hi", "label": "a"}


def test_empty_text_and_empty_label(tmp_path):
    with pytest.raises(DataError, match=r'd.csv line 3: empty text in "text"'):
        task().read(write(tmp_path, "d.csv", "text,label\nok,a\n  ,b\n"), "auto")
    with pytest.raises(DataError, match=r"e.csv line 2: empty label"):
        task().read(write(tmp_path, "e.csv", "text,label\nok,\n"), "auto")


def test_header_only_file_has_no_usable_rows(tmp_path):
    with pytest.raises(DataError, match=r"d.csv: no usable rows"):
        task().read(write(tmp_path, "d.csv", "text,label\n"), "auto")
    with pytest.raises(DataError, match=r"e.csv: the file is empty"):
        task().read(write(tmp_path, "e.csv", ""), "auto")


def test_jsonl_errors_name_the_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": 2\n')
    with pytest.raises(DataError, match=r"d.jsonl line 3: not valid JSON"):
        task().read(path, "auto")
    path = write(tmp_path, "e.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"e.jsonl line 2: expected a JSON object, got list"):
        task().read(path, "auto")
    path = write(tmp_path, "f.jsonl", '{"text": "a", "label": 1}\n{"text": 5, "label": 1}\n')
    with pytest.raises(DataError, match=r'f.jsonl line 2: text in "text" is not a string \(got int\)'):
        task().read(path, "auto")
    path = write(tmp_path, "g.jsonl", '{"text": "a"}\n')
    with pytest.raises(DataError, match=r'g.jsonl line 1: missing field "label" \(fields found: text\)'):
        task().read(path, "auto")


def test_integer_and_string_labels(tmp_path):
    rows = [{"text": "a", "label": 10}, {"text": "b", "label": 2}, {"text": "c", "label": 2.0}]
    path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    t = task()
    examples = t.read(path, "auto")
    t.fit(examples, {})
    assert t.labels == ["2", "10"]  # numeric order, not string order
    with pytest.raises(DataError, match=r"line 1: label must be a string or an integer, got True"):
        task().read(write(tmp_path, "b.jsonl", '{"text": "a", "label": true}'), "auto")


def test_parquet_rows(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b", ""], "label": ["x", "y", "x"]}), path)
    with pytest.raises(DataError, match=r'd.parquet row 3: empty text in "text"'):
        task().read(path, "auto")
    with pytest.raises(DataError, match=r"bad.parquet: not a readable Parquet file"):
        task().read(write(tmp_path, "bad.parquet", b"not parquet at all"), "auto")


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"d.xlsx: unknown file type '.xlsx'; use one of .csv"):
        list(read_records(write(tmp_path, "d.xlsx", "x")))
    with pytest.raises(DataError, match=r"nope.csv: file not found"):
        list(read_records(tmp_path / "nope.csv"))


def test_single_class_and_unseen_labels(tmp_path):
    t = task()
    train = t.read(write(tmp_path, "t.csv", "text,label\na,x\nb,x\n"), "auto")
    with pytest.raises(DataError, match=r'every example has the label "x"'):
        t.fit(train, {})
    train = t.read(write(tmp_path, "t2.csv", "text,label\na,x\nb,y\n"), "auto")
    val = t.read(write(tmp_path, "v.csv", "text,label\na,x\nc,z\n"), "auto")
    with pytest.raises(
        DataError,
        match=r'v.csv line 3: label "z" never occurs in the training data \(training labels: x, y\)',
    ):
        t.fit(train, {"validation": val})
