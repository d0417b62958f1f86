"""The multilabel task's data: labels as a list, a separated string or 0/1 columns; errors by line; the data
check's label-set warnings. No model is trained here (tests/recipes/test_multilabel.py trains one)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.unit.test_data_check import report, texts, warnings_of
from tunesmith.errors import DataError
from tunesmith.sections import ModelConfig
from tunesmith.tasks import build_task
from tunesmith.tasks.multilabel import MultilabelParams


def task_of(**params):
    return build_task(MultilabelParams(**params), ModelConfig(name="minilm", max_length=64))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_labels_as_a_list_a_separated_string_or_one_column_each_read_the_same(tmp_path: Path) -> None:
    rows = [("a daemon for the network", ["net", "daemon"]), ("edit text", ["editor"]), ("nothing", [])]
    listed = tmp_path / "listed.jsonl"
    listed.write_text("".join(json.dumps({"text": t, "labels": labels}) + "\n" for t, labels in rows))
    joined = write_csv(tmp_path / "joined.csv", ["text", "tags"], [[t, " ; ".join(x)] for t, x in rows])
    names = ["daemon", "editor", "net"]
    columns = write_csv(
        tmp_path / "columns.csv", ["text", *names], [[t, *(str(int(n in x)) for n in names)] for t, x in rows]
    )
    read = [
        task_of().read(listed, "auto"),
        task_of(label_column="tags").read(joined, "auto"),
        task_of(label_columns=names).read(columns, "auto"),
    ]
    sets = [[set(ex.labels) for ex in examples] for examples in read]
    assert sets[0] == sets[1] == sets[2] == [{"net", "daemon"}, {"editor"}, set()]
    task = task_of()
    task.fit(read[0], {})
    assert task.labels == ["daemon", "editor", "net"] and task.thresholds == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "x", "labels": 3}', "must be a list or a string of labels"),
        ('{"text": "x", "labels": ["a", ""]}', "each label must be a non-empty string"),
        ('{"text": "x", "labels": [true]}', "each label must be a non-empty string"),
        ('{"text": "", "labels": ["a"]}', 'empty text in "text"'),
        ('{"text": "x"}', 'missing field "labels"'),
    ],
)
def test_each_bad_record_is_an_error_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "labels": ["a"]}\n' + line + "\n")
    with pytest.raises(DataError, match=rf"bad.jsonl line 2: .*{message}"):
        task_of().read(path, "auto")


def test_a_bad_zero_one_cell_and_an_unknown_label_are_named_by_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["text", "a", "b"], [["one", "1", "0"], ["two", "yes", "1"]])
    with pytest.raises(DataError, match=r'c.csv line 3: label column "a" must be 0 or 1'):
        task_of(label_columns=["a", "b"]).read(path, "auto")
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "x", "labels": ["a"]}\n')
    validation = tmp_path / "validation.jsonl"
    validation.write_text('{"text": "y", "labels": ["a"]}\n{"text": "z", "labels": ["a", "zz"]}\n')
    task = task_of()
    with pytest.raises(
        DataError, match=r'validation.jsonl line 2: label "zz" never occurs in the training data'
    ):
        task.fit(task.read(train, "auto"), {"validation": task.read(validation, "auto")})


def test_the_check_warns_of_rare_constant_and_inseparable_labels(capsys, tmp_path, tiny_bert_dir) -> None:
    rows = []
    for i, text in enumerate(texts(40)):
        labels = ["everywhere"]
        if i % 2:
            labels += ["gui", "x11"]  # always together
        if i % 4 == 0:
            labels.append("cli")
        if i < 3:
            labels.append("rare")
        rows.append({"text": text, "labels": labels})
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = report(capsys, train, "--task", "multilabel", "--model", tiny_bert_dir)
    (rare,) = warnings_of(data, "rare_label")
    assert '1 of 5 labels are on fewer than 10 examples ("rare" 3)' in rare["message"]
    (constant,) = warnings_of(data, "constant_label")
    assert 'every example has the label "everywhere"' in constant["message"]
    (together,) = warnings_of(data, "inseparable_labels")
    assert "'gui', 'x11' are on the same 20 examples" in together["message"]
    assert not warnings_of(data, "imbalance")  # the single-label check stays out of multi-label sets
    assert data["stats"]["label_sets"]["train"]["labels_per_example"] == pytest.approx(93 / 40)
