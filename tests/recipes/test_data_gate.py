"""`train` passes the data check first: it refuses on any error (every bad line named, no run folder made),
starts on warnings and keeps the report in the run folder, and with check.strict refuses on warnings too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import write_csv
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.recipes.finetune import finetune

pytestmark = pytest.mark.slow


def config(data: dict[str, Path], out: Path, model: Path, **check):
    return build_config(
        {
            "model": {"name": str(model), "max_length": 48},
            "data": {k: str(v) for k, v in data.items()},
            "train": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3},
            "check": check,
            "output_dir": str(out),
        }
    )


def rows_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_train_refuses_on_errors_and_names_every_line(small_data, tmp_path, tiny_bert_dir):
    lines = rows_of(small_data["train"])
    lines[5] = "a text whose label is missing,"
    lines[40] = "too,many,fields"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    with pytest.raises(UserError) as caught:
        finetune(config({**small_data, "train": bad}, out, tiny_bert_dir), Console(file=io.StringIO()))
    message = str(caught.value)
    assert message.startswith("the data check found 2 errors; training did not start")
    assert "bad.csv line 6: empty label" in message
    assert "bad.csv line 41: 3 fields, but the header has 2" in message
    assert not out.exists()


def leaky(small_data: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """The validation file with 5 training rows copied in (leakage: a warning, not an error)."""
    import csv

    with small_data["train"].open(encoding="utf-8") as handle:
        train = [(r["text"], r["label"]) for r in csv.DictReader(handle)]
    with small_data["validation"].open(encoding="utf-8") as handle:
        validation = [(r["text"], r["label"]) for r in csv.DictReader(handle)]
    return {**small_data, "validation": write_csv(tmp_path / "leaky.csv", validation + train[:5])}


def test_train_starts_on_warnings_and_keeps_the_report(small_data, tmp_path, tiny_bert_dir):
    out = tmp_path / "run"
    shown = io.StringIO()
    finetune(config(leaky(small_data, tmp_path), out, tiny_bert_dir), Console(file=shown, width=200))
    report = json.loads((out / "data_check.json").read_text())
    assert report["ok"] and report["files"]["validation"]["examples"] == 35
    (leak,) = [w for w in report["warnings"] if w["kind"] == "leakage"]
    assert leak["count"] == 5 and leak["message"].startswith("validation: 5 of 35 inputs")
    assert "validation: 5 of 35 inputs" in shown.getvalue()  # printed before training
    assert (out / "model" / "tunesmith.json").is_file()


def test_strict_refuses_on_warnings_and_ignore_lets_a_kind_through(small_data, tmp_path, tiny_bert_dir):
    data, out = leaky(small_data, tmp_path), tmp_path / "run"
    with pytest.raises(UserError, match=r"check.strict is on .* \(.*leakage.*\); training did not start"):
        finetune(config(data, out, tiny_bert_dir, strict=True), Console(file=io.StringIO()))
    assert not out.exists()
    ignored = ["leakage", "duplicates", "conflicts", "short", "narrow", "imbalance", "shortcut"]
    finetune(config(data, out, tiny_bert_dir, strict=True, ignore=ignored), Console(file=io.StringIO()))
    assert json.loads((out / "data_check.json").read_text())["ignored"] == ["leakage"]
