"""model.max_length left empty on long texts: the run tries the lengths from 128 up to the data's and keeps the
one at which the base model (MiniLM's probe) scores best on validation; set, or on short texts, nothing is
tried. Real MiniLM, real Debian descriptions."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import demo_rows, write_csv
from tunesmith.config import build_config
from tunesmith.data.checks.render import print_report
from tunesmith.recipes.check import length_candidates
from tunesmith.recipes.prepare import prepare

pytestmark = pytest.mark.slow

LABELS = ("doc", "libdevel", "net")


def misleading_tails(split: str, n: int, seed: int) -> list[tuple[str, str]]:
    """Each package text followed by 40 texts of sections none of the labels names: the label is told by the
    beginning, and a model that reads everything reads mostly what says nothing of it (as a long chat drifts
    off its topic)."""
    rows = demo_rows(split, LABELS, n)
    pool = [t for t, label in demo_rows("train") if label not in LABELS]
    rng = random.Random(seed)
    return [(" ".join([text, *rng.sample(pool, 40)]), label) for text, label in rows]


def run_config(tmp_path: Path, minilm_dir: Path, **model) -> object:
    files = {
        "train": write_csv(tmp_path / "train.csv", misleading_tails("train", 90, 1)),
        "validation": write_csv(tmp_path / "validation.csv", misleading_tails("validation", 45, 2)),
    }
    return build_config(
        {
            "task": {"name": "classification"},
            "model": {"name": str(minilm_dir), **model},
            "data": {k: str(v) for k, v in files.items()},
            "output_dir": str(tmp_path / "run"),
        }
    )


def test_lengths_tried_double_from_128_to_the_datas():
    assert length_candidates(100) == [100]
    assert length_candidates(128) == [128]
    assert length_candidates(300) == [128, 256, 300]
    assert length_candidates(512) == [128, 256, 512]


def test_a_long_text_set_keeps_the_length_the_base_model_reads_best(tmp_path, minilm_dir):
    prepared = prepare(run_config(tmp_path, minilm_dir))
    report = prepared.report
    scores = report.length_scores
    chosen = prepared.config.model.max_length
    assert report.max_length_from_data and len(scores) >= 2
    assert list(scores) == length_candidates(max(scores))
    assert max(scores) > 256  # the data's length: these texts are long
    assert chosen == report.max_length == max(scores, key=lambda n: (scores[n], -n))
    assert scores[128] > scores[max(scores)]  # the beginning tells the label; the whole text drowns it
    assert max(f["length"] for f in prepared.train_features) == chosen  # encoded at the chosen length
    out = io.StringIO()
    print_report(Console(file=out, width=200), report)
    assert f"max_length {chosen} (from the data: the base model read the first N tokens best at {chosen}" in (
        out.getvalue()
    )


def test_a_length_that_is_set_is_not_second_guessed(tmp_path, minilm_dir):
    prepared = prepare(run_config(tmp_path, minilm_dir, max_length=384))
    assert prepared.config.model.max_length == 384 and prepared.report.length_scores == {}
