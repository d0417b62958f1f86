"""The regression task's data: numeric targets from CSV and JSON lines, errors by line, a constant target
refused, the data check's outlier and shift warnings, corrections, and the drift categories of scores. No
model is trained here (tests/recipes/test_regression.py trains one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_data_check import report, texts, warnings_of
from tests.unit.test_multilabel_task import write_csv
from tunesmith.errors import DataError
from tunesmith.sections import ModelConfig
from tunesmith.tasks import build_task
from tunesmith.tasks.base import Correction
from tunesmith.tasks.regression import RegressionParams


def task_of(**params):
    return build_task(RegressionParams(**params), ModelConfig(name="minilm", max_length=64))


def test_targets_read_from_csv_and_jsonl_and_normalise_on_the_training_split(tmp_path: Path) -> None:
    csv_file = write_csv(
        tmp_path / "a.csv", ["text", "risk"], [["low", "1"], ["high", " 3.5 "], ["mid", "-2e0"]]
    )
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(
        '{"text": "low", "risk": 1}\n{"text": "high", "risk": 3.5}\n{"text": "mid", "risk": "-2"}\n'
    )
    task = task_of(target_column="risk")
    for path in (csv_file, jsonl):
        assert [ex.value for ex in task.read(path, "auto")] == [1.0, 3.5, -2.0]
    task.fit(task.read(csv_file, "auto"), {})
    assert task.shift == pytest.approx(2.5 / 3) and task.scale == pytest.approx(2.2485, abs=1e-4)
    raw = task_of(target_column="risk", normalise=False)
    raw.fit(raw.read(csv_file, "auto"), {})
    assert (raw.shift, raw.scale) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "x", "target": "high"}', r"line 2: target in \"target\" is not a number: 'high'"),
        ('{"text": "x", "target": "inf"}', r"line 2: target in \"target\" is not a finite number"),
        ('{"text": "x", "target": NaN}', r"line 2: target in \"target\" is not a finite number"),
        ('{"text": "x", "target": true}', r"line 2: target in \"target\" must be a number, got True"),
        ('{"text": "x", "target": ""}', r'line 2: empty target in "target"'),
        ('{"text": "x", "target": [1]}', r"line 2: target in \"target\" must be a number, got list"),
        ('{"text": "x", "score": 1}', r'line 2: missing field "target"'),
    ],
)
def test_a_bad_target_is_named_by_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine", "target": 1.5}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        task_of().read(path, "auto")


def test_a_target_that_never_changes_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["text", "target"], [["a", "2"], ["b", "2.0"]])
    task = task_of()
    with pytest.raises(DataError, match="every training example has the target 2"):
        task.fit(task.read(path, "auto"), {})


def test_the_check_warns_of_outliers_and_of_a_split_whose_targets_sit_elsewhere(
    capsys, tmp_path, tiny_bert_dir
) -> None:
    values = [(i % 10) / 10 for i in range(40)]
    values[7] = 250.0  # a typo
    train = write_csv(
        tmp_path / "train.csv",
        ["text", "target"],
        [[t, str(v)] for t, v in zip(texts(40), values, strict=True)],
    )
    test = write_csv(
        tmp_path / "test.csv",
        ["text", "target"],
        [[t, str(2 + i / 20)] for i, t in enumerate(texts(20, "other"))],
    )
    data = report(capsys, train, "--test", test, "--task", "regression", "--model", tiny_bert_dir)
    outliers = warnings_of(data, "outlier_target")
    assert any("train.csv line 9 (250)" in w["where"] for w in outliers)
    (shifted,) = warnings_of(data, "shifted_target")
    assert shifted["message"].startswith("test: its median target")
    assert data["stats"]["targets"]["train"]["max"] == 250.0
    assert not warnings_of(data, "imbalance") and not warnings_of(data, "conflicts")


def test_a_correction_is_a_number_and_becomes_a_record() -> None:
    task = task_of(target_column="risk")
    assert task.correction_refusal(Correction(answer="better"), "a claim") is not None
    assert task.correction_refusal(Correction(label="high"), "a claim") is not None
    assert task.correction_refusal(Correction(label="nan"), "a claim") is not None
    assert task.correction_refusal(Correction(label="2.5"), "a claim") is None
    assert task.corrected_record("a claim", "2.5", None) == {"text": "a claim", "risk": 2.5}


def test_scores_fall_into_the_reference_deciles_for_the_drift_report() -> None:
    task = task_of()
    reference = [{"score": float(i)} for i in range(100)]
    names, ref, recent = task.output_categories(reference, [{"score": 95.0}, {"score": -3.0}, {"score": 1e9}])
    assert len(names) == 10 and sorted(set(ref)) == sorted(names)
    assert all(ref.count(name) == 10 for name in names)
    assert recent == ["bin 10", "bin 1", "bin 10"]
