import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.data.readers import FileFormat, csv_delimiter, delimiter_note, read_records
from tunesmith.errors import DataError
from tunesmith.sections import ModelConfig
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


def test_missing_columns_are_one_error_for_the_file_with_the_overrides_that_fix_it(tmp_path):
    path = write(tmp_path, "d.csv", "Text,Category\n" + "hello there,a\n" * 200)
    seen: list[DataError] = []
    with pytest.raises(DataError) as caught:
        list(task().examples(path, "auto", seen.append))
    assert seen == []  # not once per row: the file stops at its header
    assert caught.value.line is None
    assert str(caught.value) == (
        'd.csv: missing columns "text" and "label" (columns found: Text, Category); to read other columns, '
        "add the overrides task.text_column=Text task.label_column=Category"
    )
    assert len(task(text_column="Text", label_column="Category").read(path, "auto")) == 200


def test_missing_column_without_a_likely_one_says_column(tmp_path):
    path = write(tmp_path, "d.parquet", b"")
    pq.write_table(pa.table({"body": ["x"], "topic": ["a"], "id": [1]}), path)
    with pytest.raises(DataError, match=r'^d.parquet: missing column "label" .*task.label_column=COLUMN$'):
        task(text_column="body").read(path, "auto")


def test_jsonl_fields_are_checked_record_by_record(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "fine", "label": "a"}\n{"body": "x", "label": "b"}\n')
    with pytest.raises(
        DataError, match=r'^d.jsonl line 2: missing field "text" \(fields found: body, label\)'
    ):
        task().read(path, "auto")


@pytest.mark.parametrize(
    ("content", "delimiter"),
    [
        ('text;label\n"one, two";a\nthree;b\nfour;a\n', ";"),
        ("text|label\none, two|a\nthree|b\n", "|"),
        ("text\tlabel\none, two\ta\nthree\tb\n", "\t"),
        ('text,label\n"one; two",a\nthree;four,b\n', ","),  # semicolons inside the text
        ("text\nonly one column here\nand another; row\n", ","),
    ],
)
def test_csv_delimiter_is_detected(tmp_path, content, delimiter):
    path = write(tmp_path, "d.csv", content)
    assert csv_delimiter(path) == delimiter
    records = list(read_records(path))
    assert list(records[0].fields) == content.split("\n")[0].split(delimiter)


def test_detected_delimiter_is_said_and_data_delimiter_forces_one(tmp_path):
    path = write(tmp_path, "d.csv", "text;label\nfirst text;a\nsecond text;b\n")
    assert delimiter_note(path) == "read as semicolon-separated (detected; data.delimiter sets it)"
    assert delimiter_note(write(tmp_path, "c.csv", "text,label\nx,a\n")) is None
    forced = list(read_records(path, FileFormat(delimiter=",")))
    assert list(forced[0].fields) == ["text;label"]
    assert [ex.text for ex in task().read(path, FileFormat())] == ["first text", "second text"]


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
    with pytest.raises(DataError, match=r"d.xlsx: unknown file type '.xlsx'; use one of .conll, .csv"):
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
