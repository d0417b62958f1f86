"""Token classification without training: tag schemes, seqeval's metrics on hand-made cases, reading words
with tags (JSONL, CoNLL) or texts with character spans, errors by line, and labels aligned to the sub-tokens of
a real tokenizer, in overlapping windows for a long text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tunesmith.errors import DataError
from tunesmith.evaluation.entities import entities_of, entity_metrics, entity_resampler, scheme_problem
from tunesmith.models.catalog import resolve_model
from tunesmith.models.loader import load_tokenizer
from tunesmith.sections import ModelConfig
from tunesmith.tasks import build_task
from tunesmith.tasks.tokens import IGNORED, TokensParams


def task_of(max_length: int = 64, **params):
    cfg = ModelConfig(name="minilm", max_length=max_length)
    task = build_task(TokensParams(**params), cfg)
    task.use_tokenizer(load_tokenizer(resolve_model("minilm"), cfg))
    return task


def test_schemes_are_checked_and_read_into_entities() -> None:
    assert scheme_problem(["B-PER", "I-PER", "O", "B-LOC"], "IOB2") is None
    assert "I-PER follows O" in scheme_problem(["O", "I-PER"], "IOB2")
    assert "I-LOC follows B-PER" in scheme_problem(["B-PER", "I-LOC"], "IOB2")
    assert scheme_problem(["B-PER", "E-PER", "S-LOC", "O"], "BIOES") is None
    assert "never got its E- tag" in scheme_problem(["B-PER", "O"], "BIOES")
    assert "is not IOB2" in scheme_problem(["S-PER"], "IOB2")
    assert entities_of(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert entities_of(["B-PER", "E-PER", "S-LOC", "O"]) == [("PER", 0, 2), ("LOC", 2, 3)]


def test_metrics_follow_seqeval_lenient_and_strict() -> None:
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["I-PER", "I-PER", "O", "B-LOC"], ["O", "O"]]
    m = entity_metrics(truth, predicted)
    # lenient (conlleval): an I- after the sentence start begins an entity, so PER is found; ORG is missed
    assert (m["precision"], m["recall"]) == (1.0, pytest.approx(2 / 3))
    assert m["f1"] == pytest.approx(0.8)
    # strict IOB2: that I- begins nothing, so only LOC is right
    assert m["strict_f1"] == pytest.approx(2 * (1 / 1) * (1 / 3) / (1 + 1 / 3))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    everything = np.arange(2)[None, :]
    resampled = entity_resampler(truth, predicted)(everything)
    for name in ("precision", "recall", "f1", "accuracy"):
        assert resampled[name][0] == pytest.approx(m[name]), name


def test_words_conll_and_spans_read_alike_and_errors_name_their_line(tmp_path: Path) -> None:
    words = tmp_path / "w.jsonl"
    words.write_text(
        json.dumps({"tokens": ["Ana", "writes", "Rust", "code"], "tags": ["B-PER", "O", "B-LANG", "O"]})
        + "\n"
    )
    conll = tmp_path / "w.conll"
    conll.write_text("-DOCSTART- O\n\nAna NNP B-PER\nwrites VBZ O\nRust NNP B-LANG\ncode NN O\n")
    spans = tmp_path / "s.jsonl"
    spans.write_text(
        json.dumps(
            {
                "text": "Ana writes Rust code",
                "entities": [
                    {"start": 0, "end": 3, "label": "PER"},
                    {"start": 11, "end": 15, "label": "LANG"},
                ],
            }
        )
        + "\n"
    )
    task = task_of()
    read = [task.read(path, "auto")[0] for path in (words, conll, spans)]
    assert {(ex.text, ex.entities) for ex in read} == {
        ("Ana writes Rust code", (("PER", 0, 1), ("LANG", 2, 3)))
    }
    assert read[1].line == 3  # the CoNLL sentence's first word

    bad = tmp_path / "bad.jsonl"
    rows = [
        {"tokens": ["a", "b"], "tags": ["O", "O"]},
        {"tokens": ["a", "b"], "tags": ["O"]},
        {"tokens": ["a", "b"], "tags": ["O", "I-X"]},
        {"text": "Parisian food", "entities": [{"start": 0, "end": 5, "label": "LOC"}]},
    ]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems: list[DataError] = []
    list(task.examples(bad, "auto", problems.append))
    assert [str(p) for p in problems] == [
        "bad.jsonl line 2: 2 words but 1 tags: one tag a word",
        "bad.jsonl line 3: word 2: I-X follows O: an entity begins with B-X (IOB2) (task.scheme=IOB2)",
        "bad.jsonl line 4: entity 'Paris' at 0-5 cuts a word ('Parisian'): an entity covers whole words (runs "
        "of letters and digits; other characters are words alone)",
    ]


def test_labels_sit_on_each_words_first_sub_token_or_on_all(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps({"tokens": ["Tokenization", "in", "Haskell"], "tags": ["O", "O", "B-LANG"]}) + "\n"
    )
    for mode, later in (("first", IGNORED), ("all", "I-LANG")):
        task = task_of(label_subtokens=mode)
        examples = task.read(path, "auto")
        task.fit(examples, {})
        (feature,) = task.encode(examples, task.tokenizer)
        pieces = task.tokenizer.convert_ids_to_tokens(feature["input_ids"])
        assert pieces[:3] == ["[CLS]", "token", "##ization"] and "##kell" in pieces
        labels = [task.labels[i] if i != IGNORED else IGNORED for i in feature["labels"]]
        haskell = pieces.index("has")
        assert labels[0] == labels[-1] == IGNORED  # [CLS], [SEP]
        assert labels[1] == "O" and labels[haskell] == "B-LANG"
        assert labels[haskell + 1] == later
        assert feature["starts"][1] == 0 and feature["starts"][2] == -1 and feature["starts"][haskell] == 2


def test_a_long_text_is_read_in_windows_and_each_word_is_read_once(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(60)]
    tags = ["O"] * 60
    tags[30] = "B-X"
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"tokens": words, "tags": tags}) + "\n")
    task = task_of(max_length=32, stride=8)
    examples = task.read(path, "auto")
    task.fit(examples, {})
    features = task.encode(examples, task.tokenizer)
    assert len(features) > 2 and all(f["length"] <= 32 for f in features)
    seen = {w for f in features for w in f["starts"] if w >= 0}
    assert seen == set(range(60))
    assert task._truth(features) == [tags]


def test_a_correction_is_the_texts_right_entities_checked_against_its_words() -> None:
    from tunesmith.tasks.base import Correction

    task = task_of()
    task.labels = ["O", "B-LANG", "I-LANG", "B-PROTO", "I-PROTO"]
    text = "A Rust client for HTTP/2."
    rust, http = {"start": 2, "end": 6, "label": "LANG"}, {"start": 18, "end": 22, "label": "PROTO"}
    assert task.correction_refusal(Correction(entities=[rust, http]), text) is None
    assert task.correction_refusal(Correction(entities=[]), text) is None  # none at all
    assert "cuts a word" in task.correction_refusal(Correction(entities=[{**rust, "end": 4}]), text)
    assert "never occurs" in task.correction_refusal(Correction(entities=[{**rust, "label": "DRUG"}]), text)
    assert "overlaps" in task.correction_refusal(
        Correction(entities=[rust, {**rust, "label": "PROTO"}]), text
    )
    assert '"entities"' in task.correction_refusal(Correction(label="LANG"), text)
    stored = task.stored_answer(Correction(entities=[http, rust]))
    assert task.corrected_record(text, None, stored) == {"text": text, "entities": [rust, http]}
