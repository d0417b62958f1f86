import json
from pathlib import Path

import pytest

from tunesmith.data.chat_formats import read_conversations
from tunesmith.errors import DataError


def jsonl(tmp_path: Path, name: str, *rows) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def messages(path: Path, fmt: str = "auto") -> list[list[tuple[str, str]]]:
    return [[(m["role"], m["content"]) for m in c.messages] for c in read_conversations(path, fmt)]


def test_openai_messages(tmp_path):
    path = jsonl(
        tmp_path,
        "c.jsonl",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Bye!"},
            ]
        },
    )
    assert messages(path) == [
        [
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello!"),
            ("user", "Bye"),
            ("assistant", "Bye!"),
        ]
    ]


def test_sharegpt_alpaca_and_prompt_completion(tmp_path):
    share = jsonl(
        tmp_path,
        "s.jsonl",
        {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
    )
    assert messages(share) == [[("user", "2+2?"), ("assistant", "4")]]
    alpaca = jsonl(
        tmp_path,
        "a.jsonl",
        {"instruction": "Summarise", "input": "A long text.", "output": "Short."},
        {"instruction": "Say hi", "input": "", "output": "Hi"},
    )
    assert messages(alpaca) == [
        [("user", "Summarise\n\nA long text."), ("assistant", "Short.")],
        [("user", "Say hi"), ("assistant", "Hi")],
    ]
    pc = jsonl(tmp_path, "p.jsonl", {"prompt": "Q", "completion": "A"})
    assert messages(pc) == [[("user", "Q"), ("assistant", "A")]]


def test_csv_prompt_completion(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,completion\nWhat is apt?,A package manager.\n")
    assert messages(path) == [[("user", "What is apt?"), ("assistant", "A package manager.")]]


@pytest.mark.parametrize(
    "row,message",
    [
        ({"messages": "hello"}, 'line 2: "messages" must be a list of messages, got str'),
        (
            {"messages": [{"role": "bot", "content": "x"}]},
            "line 2: message 1: unknown role 'bot' (roles: system, user, assistant)",
        ),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "line 2: no assistant turn"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
            "line 2: message 2 content is empty",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]},
            "line 2: message 2 content must be a string, got int",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "line 2: a system message may only come first",
        ),
        ({"text": "no chat here"}, 'line 2: missing field "messages" (fields found: text)'),
    ],
)
def test_structure_errors_name_the_line(tmp_path, row, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = jsonl(tmp_path, "c.jsonl", good, row)
    with pytest.raises(DataError) as err:
        list(read_conversations(path))
    assert str(err.value).startswith("c.jsonl ") and message in str(err.value)


def test_first_record_fixes_the_format(tmp_path):
    path = jsonl(tmp_path, "c.jsonl", {"prompt": "q", "completion": "a"}, {"instruction": "q", "output": "a"})
    with pytest.raises(
        DataError, match=r'c.jsonl line 2: missing field "prompt" \(fields found: instruction, output\)'
    ):
        list(read_conversations(path))
    unknown = jsonl(tmp_path, "u.jsonl", {"text": "no chat here"})
    with pytest.raises(
        DataError,
        match=r"u.jsonl line 1: cannot tell the chat format: expected a `messages` list .*fields found: text",
    ):
        list(read_conversations(unknown))
    with pytest.raises(DataError, match="unknown chat format 'chatml'; valid formats: auto, openai"):
        list(read_conversations(path, "chatml"))


def test_sharegpt_speakers_fold_case_openai_roles_do_not(tmp_path):
    share = jsonl(
        tmp_path,
        "s.jsonl",
        {"conversations": [{"from": "Human", "value": "q"}, {"from": "GPT", "value": "a"}]},
    )
    assert messages(share) == [[("user", "q"), ("assistant", "a")]]
    openai = jsonl(
        tmp_path,
        "o.jsonl",
        {"messages": [{"role": "User", "content": "q"}, {"role": "assistant", "content": "a"}]},
    )
    with pytest.raises(DataError, match=r"o.jsonl line 1: message 1: unknown role 'User'"):
        list(read_conversations(openai))
