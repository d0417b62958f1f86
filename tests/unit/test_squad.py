"""SQuAD-style reading (offsets given or located, errors with the line) and long contexts cut into windows."""

import json

import pytest
from transformers import AutoTokenizer

from tunesmith.data.squad import qa_examples
from tunesmith.errors import DataError
from tunesmith.sections import ModelConfig
from tunesmith.tasks.qa import QAParams
from tunesmith.tasks.qa_extractive import ExtractiveQA

CONTEXT = "htop (utils): interactive processes viewer. It is written in C and uses ncurses."


def write(tmp_path, rows):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def read(path):
    return list(qa_examples(path, "auto", "context", "question", "answers"))


def test_answer_shapes_and_located_offsets(tmp_path):
    rows = [
        {"context": CONTEXT, "question": "q1", "answers": {"text": ["utils"], "answer_start": [6]}},
        {"context": CONTEXT, "question": "q2", "answers": [{"text": "C", "answer_start": 61}]},
        {"context": CONTEXT, "question": "q3", "answer": "ncurses"},
    ]
    examples = read(write(tmp_path, rows))
    assert [(e.answers, e.starts) for e in examples] == [
        (("utils",), (6,)),
        (("C",), (61,)),
        (("ncurses",), (72,)),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"context": CONTEXT, "question": "q", "answer": "emacs"}, "line 2: answer 1 'emacs' does not occur"),
        (
            {"context": CONTEXT, "question": "q", "answers": {"text": ["utils"], "answer_start": [7]}},
            "line 2: answer 1: answer_start=7 does not point at 'utils'",
        ),
        ({"context": CONTEXT, "question": ""}, 'line 2: empty or non-text value in "question"'),
        ({"context": CONTEXT, "question": "q"}, 'line 2: missing field "answers"'),
    ],
)
def test_bad_records_name_their_line(tmp_path, row, message):
    good = {"context": CONTEXT, "question": "q", "answer": "utils"}
    with pytest.raises(DataError, match=message):
        read(write(tmp_path, [good, row]))


def test_long_context_is_windowed_and_the_answer_found_in_its_window(tmp_path, minilm_dir):
    filler = " ".join(f"word{i}" for i in range(150))
    context = f"{filler}. The answer is written in Rust here. {filler}"
    path = write(tmp_path, [{"context": context, "question": "Which language?", "answer": "Rust"}])
    task = ExtractiveQA(QAParams(stride=16), ModelConfig(max_length=64))
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    task.use_tokenizer(tokenizer)
    features = task.encode(read(path), tokenizer)
    assert len(features) > 5 and all(f["length"] <= 64 for f in features)
    holding = [f for f in features if f["start"] != 0]
    assert holding  # the answer lies wholly inside at least one window ...
    for f in holding:
        start, end = f["offsets"][f["start"]][0], f["offsets"][f["end"]][1]
        assert context[start:end] == "Rust"
    assert any(f["start"] == f["end"] == 0 for f in features)  # ... and the others point at [CLS]
