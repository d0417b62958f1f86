"""Instruction and chat data in the four shapes people have it, read into one: a list of messages with
role (system, user, assistant) and content, plus the file and line it came from.

    openai             {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}
    sharegpt           {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}
    alpaca             {"instruction": "...", "input": "... (optional)", "output": "...", "system": optional}
    prompt_completion  {"prompt": "...", "completion": "..."}

`auto` takes the format from the first record's fields; every record must then have that shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.readers import FileFormat, OnError, Record, parse_each, read_records, require_field
from tunesmith.errors import DataError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}
FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion")


@dataclass(frozen=True)
class Conversation:
    messages: tuple[dict[str, str], ...]
    path: Path
    line: int
    unit: str = "line"


def detect_format(fields: dict[str, Any]) -> str | None:
    if "messages" in fields:
        return "openai"
    if "conversations" in fields:
        return "sharegpt"
    if "instruction" in fields and "output" in fields:
        return "alpaca"
    if "prompt" in fields and "completion" in fields:
        return "prompt_completion"
    return None


def read_conversations(
    path: str | Path,
    fmt: str = "auto",
    file_format: str | FileFormat = "auto",
    on_error: OnError | None = None,
) -> Iterator[Conversation]:
    """Conversations streamed from a file; the format is told from the first record that shows one. See
    `read_records` for `on_error`."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(path, None, f"unknown chat format {fmt!r}; valid formats: auto, {', '.join(FORMATS)}")
    chosen = None if fmt == "auto" else fmt

    def parse(record: Record) -> Conversation:
        nonlocal chosen
        try:
            shape = chosen or detect_format(record.fields)
            if shape is None:
                found = ", ".join(map(str, record.fields)) or "none"
                raise record.error(
                    "cannot tell the chat format: expected a `messages` list (OpenAI), `conversations` (ShareGPT), "
                    f"`instruction` + `output` (alpaca) or `prompt` + `completion` (fields found: {found})"
                )
            messages = _PARSERS[shape](record)
            _check(record, messages)
        except DataError as exc:
            if exc.kind == "invalid":
                exc.kind = "chat_structure"
            raise
        chosen = shape
        return Conversation(tuple(messages), record.path, record.line, record.unit)

    return parse_each(read_records(path, file_format, on_error), parse, on_error)


def text_value(record: Record, value: Any, where: str) -> str:
    """A field's value that must be non-empty text (`where` names it in the error)."""
    if not isinstance(value, str):
        raise record.error(f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise record.error(f"{where} is empty")
    return value


def _turns(
    record: Record,
    key: str,
    noun: str,
    role_key: str,
    content_key: str,
    roles: dict[str, str],
    role_word: str,
    fold_case: bool = False,
) -> list[dict[str, str]]:
    """A list of turns under `key`, each an object whose `role_key` maps through `roles` to a role."""
    turns = require_field(record, key)
    if not isinstance(turns, list):
        raise record.error(f'"{key}" must be a list of {noun}s, got {type(turns).__name__}')
    out = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise record.error(f"{noun} {i} must be an object with {role_key} and {content_key}")
        speaker = turn.get(role_key)
        role = roles.get(speaker.lower() if fold_case else speaker) if isinstance(speaker, str) else None
        if role is None:
            raise record.error(
                f"{noun} {i}: unknown {role_word} {speaker!r} ({role_word}s: {', '.join(roles)})"
            )
        out.append(
            {"role": role, "content": text_value(record, turn.get(content_key), f"{noun} {i} {content_key}")}
        )
    return out


def _openai(record: Record) -> list[dict[str, str]]:
    return _turns(record, "messages", "message", "role", "content", {r: r for r in ROLES}, "role")


def _sharegpt(record: Record) -> list[dict[str, str]]:
    return _turns(record, "conversations", "turn", "from", "value", SHAREGPT_ROLES, "speaker", fold_case=True)


def _alpaca(record: Record) -> list[dict[str, str]]:
    f = record.fields
    instruction = text_value(record, require_field(record, "instruction"), '"instruction"')
    extra = f.get("input")
    if extra is not None and not isinstance(extra, str):
        raise record.error(f'"input" must be a string, got {type(extra).__name__}')
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    out = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": text_value(record, require_field(record, "output"), '"output"')},
    ]
    if f.get("system") is not None:
        out.insert(0, {"role": "system", "content": text_value(record, f["system"], '"system"')})
    return out


def _prompt_completion(record: Record) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": text_value(record, require_field(record, "prompt"), '"prompt"')},
        {
            "role": "assistant",
            "content": text_value(record, require_field(record, "completion"), '"completion"'),
        },
    ]


_PARSERS = {
    "openai": _openai,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
}


def _check(record: Record, messages: list[dict[str, str]]) -> None:
    if not any(m["role"] == "assistant" for m in messages):
        raise record.error("no assistant turn: nothing to learn from this example")
    if any(m["role"] == "system" for m in messages[1:]):
        raise record.error("a system message may only come first")
