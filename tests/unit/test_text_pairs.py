"""Text pairs (task.text_pair_column) on a real tokenizer: both texts encoded together with token type ids,
cut longest first so neither side is lost; pairs read by line; the data check sees the pair as one input (a
repeated pair is a duplicate, a pair in two splits is leakage; the same first text with another second one is
neither); `predict` takes TEXT<tab>PAIR. No model is trained here (tests/recipes/test_text_pairs.py does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_data_check import report, texts, warnings_of
from tests.unit.test_multilabel_task import write_csv
from tunesmith.errors import DataError, UserError
from tunesmith.models.catalog import resolve_model
from tunesmith.models.loader import load_tokenizer
from tunesmith.sections import ModelConfig
from tunesmith.tasks import build_task
from tunesmith.tasks.classification import ClassificationParams
from tunesmith.tasks.regression import RegressionParams


def pair_task(max_length: int = 32, params=None):
    cfg = ModelConfig(name="minilm", max_length=max_length)
    task = build_task(params or ClassificationParams(text_pair_column="candidate"), cfg)
    task.use_tokenizer(load_tokenizer(resolve_model("minilm"), cfg))
    return task


def test_a_pair_is_one_sequence_with_token_types_and_both_sides_survive_truncation(tmp_path: Path) -> None:
    long_text = " ".join(["networking"] * 60)
    path = write_csv(
        tmp_path / "p.csv",
        ["text", "candidate", "label"],
        [["reset my password", "how to change a password", "match"], [long_text, "a chess game", "other"]],
    )
    task = pair_task()
    examples = task.read(path, "auto")
    assert (examples[0].text, examples[0].pair) == ("reset my password", "how to change a password")
    task.fit(examples, {})
    short, cut = task.encode(examples, task.tokenizer)
    tokenizer = task.tokenizer
    assert (
        tokenizer.decode(short["input_ids"]) == "[CLS] reset my password [SEP] how to change a password [SEP]"
    )
    assert short["token_type_ids"] == [0] * 5 + [1] * 6
    # longest first: the long text gives up tokens, the short pair keeps all of its own
    assert (
        len(cut["input_ids"]) == 32
        and cut["token_type_ids"].count(1) == len(tokenizer("a chess game")["input_ids"]) - 1
    )
    batch = task.collate([short, cut], tokenizer.pad_token_id)
    assert (
        batch["token_type_ids"].shape == batch["input_ids"].shape and int(batch["token_type_ids"][0, -1]) == 0
    )
    (measured,) = task.measure(examples[1:])
    assert measured.truncated and measured.tokens > 32


def test_pairs_are_read_by_line_and_predict_takes_a_tab(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", ["text", "candidate", "label"], [["a", "b", "x"], ["c", "  ", "y"]])
    with pytest.raises(DataError, match=r'p.csv line 3: empty text in "candidate"'):
        pair_task().read(path, "auto")
    missing = write_csv(tmp_path / "m.csv", ["text", "label"], [["a", "x"]])
    with pytest.raises(DataError, match="candidate"):
        pair_task().read(missing, "auto")
    task = pair_task()
    assert task.prediction_inputs(["one\ttwo"], None, None) == [("one", "two")]
    with pytest.raises(UserError, match="TEXT<tab>PAIR"):
        task.prediction_inputs(["no tab here"], None, None)
    scored = pair_task(params=RegressionParams(text_pair_column="candidate"))
    example = scored.unlabelled(("query", "passage"), 1)
    assert scored.record(example)["candidate"] == "passage"
    assert scored.traffic_text(["query", "passage"]) == scored.view(example).input == "query\npassage"


def test_the_check_compares_whole_pairs(capsys, tmp_path, tiny_bert_dir) -> None:
    firsts = texts(40)
    rows = [[t, f"candidate {i % 7} {t[::-1]}", "ab"[i % 2]] for i, t in enumerate(firsts)]
    rows.append([firsts[0], "another candidate altogether", "b"])  # same first text, another pair: fine
    rows.append(list(rows[3]))  # the same pair again: a duplicate
    train = write_csv(tmp_path / "train.csv", ["text", "candidate", "label"], rows)
    test = write_csv(
        tmp_path / "test.csv", ["text", "candidate", "label"], [rows[5], [firsts[6], "new one", "a"]]
    )
    data = report(
        capsys, train, "--test", test, "--task", "classification", "--model", tiny_bert_dir,
        "task.text_pair_column=candidate",
    )  # fmt: skip
    (duplicates,) = warnings_of(data, "duplicates")
    assert duplicates["count"] == 1
    (leakage,) = warnings_of(data, "leakage")
    assert leakage["count"] == 1
