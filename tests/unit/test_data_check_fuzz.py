"""Any bytes in, a report or an exit-2 message out, never a traceback: a corpus of broken files (tests/data/
broken/) and property-based fuzzing of the readers and the chat and classification parsers behind the check."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tunesmith.data.checks.gate import CheckReport, check_data
from tunesmith.errors import UserError
from tunesmith.sections import CheckConfig, ModelConfig
from tunesmith.tasks.chat import Chat, ChatParams
from tunesmith.tasks.classification import Classification, ClassificationParams

BROKEN = Path(__file__).resolve().parents[1] / "data" / "broken"

# file -> (task, a substring of the expected message; None where the file is fine)
CORPUS = {
    "latin1.csv": ("classification", "latin1.csv line 2: not valid UTF-8"),
    "utf16.csv": ("classification", "utf16.csv line 1: not valid UTF-8"),
    "unclosed_quote.csv": ("classification", "unclosed_quote.csv line 3: a quoted field opened on this line"),
    "nul_byte.csv": ("classification", "nul_byte.csv line 3: a NUL byte at column 4"),
    "ragged.csv": ("classification", "ragged.csv line 3: 3 fields, but the header has 2"),
    "empty.csv": ("classification", "empty.csv: the file is empty"),
    "header_only.csv": ("classification", "header_only.csv: no usable rows"),
    "duplicate_header.csv": ("classification", "duplicate_header.csv line 1: duplicate column names: text"),
    "crlf_bom.csv": ("classification", None),
    "semicolon.csv": ("classification", None),
    "misnamed_columns.csv": (
        "classification",
        'misnamed_columns.csv: missing columns "text" and "label" (columns found: Text, Category); to read '
        "other columns, add the overrides task.text_column=Text task.label_column=Category",
    ),
    "cut_mid_line.jsonl": ("classification", "cut_mid_line.jsonl line 2: not valid JSON"),
    "deep_nesting.jsonl": ("classification", "deep_nesting.jsonl line 2: not usable JSON"),
    "huge_int.jsonl": ("classification", "huge_int.jsonl line 1: not usable JSON"),
    "random_bytes.jsonl": ("classification", "random_bytes.jsonl line 1:"),
    "not_parquet.parquet": ("classification", "not_parquet.parquet: not a readable Parquet file"),
    "truncated.parquet": ("classification", "truncated.parquet: not a readable Parquet file"),
    "wrong_types.parquet": ("classification", 'wrong_types.parquet row 1: text in "text" is not a string'),
    "chat_not_a_list.jsonl": ("chat", 'chat_not_a_list.jsonl line 1: "messages" must be a list'),
    "chat_nan.jsonl": ("chat", "chat_nan.jsonl line 1: message 1 content must be a string, got float"),
    "chat_nested_content.jsonl": (
        "chat",
        "chat_nested_content.jsonl line 1: message 1 content must be a string",
    ),
}


@pytest.fixture(scope="module")
def tasks(tiny_bert_dir, smollm_dir):
    classification = Classification(ClassificationParams(), ModelConfig(name="t", max_length=64))
    classification.use_tokenizer(AutoTokenizer.from_pretrained(tiny_bert_dir))
    chat = Chat(ChatParams(), ModelConfig(name="t", max_length=64))
    chat.use_tokenizer(AutoTokenizer.from_pretrained(smollm_dir))
    return {"classification": classification, "chat": chat}


def outcome(task, path: Path) -> str | None:
    """None for a clean report; else the message a user sees with exit 2. Anything else propagates."""
    try:
        report: CheckReport = check_data(task, {"train": path}, "auto", CheckConfig(), tokenizer_name="t")
    except UserError as exc:
        return str(exc)
    if report.ok:
        return None
    assert report.errors and all(f.message for f in report.errors)
    return "\n".join(f.message for f in report.errors)


def test_the_corpus_is_complete():
    assert sorted(p.name for p in BROKEN.iterdir() if p.name != "README.md") == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_broken_file_gives_its_message(tasks, name):
    task, expected = CORPUS[name]
    message = outcome(tasks[task], BROKEN / name)
    if expected is None:
        assert message is None
    else:
        assert message is not None and expected in message, message


def _fuzz(task, suffix: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        message = outcome(task, path)
        if message is not None:
            assert path.name in message


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]))
def test_any_bytes(tasks, content, suffix):
    _fuzz(tasks["classification"], suffix, content)


CSV_TEXT = st.text(alphabet=st.sampled_from('ab ,"\n\r\t\x00é€\\;x1'), max_size=200)


@FUZZ
@given(body=CSV_TEXT)
def test_csv_like_text(tasks, body):
    _fuzz(tasks["classification"], ".csv", ("text,label\n" + body).encode("utf-8"))


KEYS = ["text", "label", "messages", "role", "content", "conversations", "from", "value", "instruction"]
KEYS += ["input", "output", "prompt", "completion", "system", "user", "assistant", "human", "gpt"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(KEYS)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)


@FUZZ
@given(rows=st.lists(JSON_VALUES, min_size=1, max_size=6), task=st.sampled_from(["classification", "chat"]))
def test_json_lines_of_any_shape(tasks, rows, task):
    content = (
        "\n".join(json.dumps(r) for r in rows) + "\n"
    )  # NaN and Infinity included, as Python writes them
    _fuzz(tasks[task], ".jsonl", content.encode("utf-8"))


TURN = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool", "bot", ""]),
        "content": st.text(max_size=40),
    }
)


@FUZZ
@given(chats=st.lists(st.lists(TURN, max_size=5), min_size=1, max_size=5))
def test_chats_of_any_turns(tasks, chats):
    content = "\n".join(json.dumps({"messages": m}) for m in chats) + "\n"
    _fuzz(tasks["chat"], ".jsonl", content.encode("utf-8"))
