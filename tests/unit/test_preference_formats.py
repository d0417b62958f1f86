"""Preference files in TRL's, OpenAI's and KTO's shapes read into one; every malformed record names its file
and line, and says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.preference_formats import read_preferences
from tunesmith.errors import DataError

USER = {"role": "user", "content": "Which package holds ls?"}
SYSTEM = {"role": "system", "content": "Answer in one line."}


def jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_the_three_formats_read_into_one(tmp_path):
    trl = jsonl(
        tmp_path / "trl.jsonl",
        {"prompt": "Which package holds ls?", "chosen": "coreutils", "rejected": "util-linux"},
        {
            "prompt": [SYSTEM, USER],
            "chosen": [{"role": "assistant", "content": "coreutils"}],
            "rejected": [{"role": "assistant", "content": "bash"}],
        },
        {
            "chosen": [USER, {"role": "assistant", "content": "coreutils"}],  # implicit prompt
            "rejected": [USER, {"role": "assistant", "content": "findutils"}],
        },
    )
    got = list(read_preferences(trl))
    assert [e.prompt for e in got] == [(USER,), (SYSTEM, USER), (USER,)]
    assert [(e.chosen, e.rejected, e.desirable) for e in got] == [
        ("coreutils", "util-linux", None),
        ("coreutils", "bash", None),
        ("coreutils", "findutils", None),
    ]
    openai = jsonl(
        tmp_path / "openai.jsonl",
        {
            "input": {"messages": [USER]},
            "preferred_output": [{"role": "assistant", "content": "coreutils"}],
            "non_preferred_output": [{"role": "assistant", "content": "bash"}],
        },
    )
    (one,) = read_preferences(openai)
    assert (one.prompt, one.chosen, one.rejected, one.line) == ((USER,), "coreutils", "bash", 1)
    kto = jsonl(
        tmp_path / "kto.jsonl",
        {"prompt": "Which package holds ls?", "completion": "coreutils", "label": True},
        {"prompt": [USER], "completion": [{"role": "assistant", "content": "bash"}], "label": False},
    )
    assert [(e.chosen, e.rejected, e.desirable) for e in read_preferences(kto)] == [
        ("coreutils", None, True),
        ("bash", None, False),
    ]


BAD = [
    ({"prompt": "q", "chosen": "same", "rejected": " same "}, "the chosen and rejected answers are the same"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, '"chosen" is empty'),
    (
        {"prompt": [USER, {"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"},
        '"prompt" ends with a assistant turn; the answers must reply to the user\'s last turn',
    ),
    (
        {
            "chosen": [USER, {"role": "assistant", "content": "a"}],
            "rejected": [
                {"role": "user", "content": "another question"},
                {"role": "assistant", "content": "b"},
            ],
        },
        "must be the same conversation up to their last answer",
    ),
    (
        {"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
        '"chosen" must be one assistant message',
    ),
    ({"prompt": "q", "chosen": "a"}, '"rejected"'),
    ({"prompt": "q", "completion": "a", "label": "yes"}, '"label" must be true (desirable) or false'),
    (
        {"question": "q", "answer": "a"},
        'missing field "chosen" (fields found: question, answer)',
    ),  # TRL, as line 1
]


@pytest.mark.parametrize(("record", "said"), BAD)
def test_each_malformed_record_names_its_file_and_line(tmp_path, record, said):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    if "completion" in record:
        good = {"prompt": "q", "completion": "a", "label": True}
    path = jsonl(tmp_path / "pairs.jsonl", good, record)
    with pytest.raises(DataError) as caught:
        list(read_preferences(path))
    assert str(caught.value).startswith("pairs.jsonl line 2: ") and said in str(caught.value)
    assert caught.value.kind in ("preference_structure", "missing_field")


def test_a_first_record_of_no_known_shape_lists_the_shapes(tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", {"question": "q", "answer": "a"})
    with pytest.raises(DataError, match="pairs.jsonl line 1: cannot tell the preference format: expected"):
        list(read_preferences(path))


def test_errors_are_collected_when_asked_and_the_good_records_kept(tmp_path):
    path = jsonl(
        tmp_path / "pairs.jsonl",
        {"prompt": "q", "chosen": "a", "rejected": "a"},
        {"prompt": "q", "chosen": "a", "rejected": "b"},
    )
    errors: list[DataError] = []
    kept = list(read_preferences(path, on_error=errors.append))
    assert [e.line for e in kept] == [2] and [e.line for e in errors] == [1]
