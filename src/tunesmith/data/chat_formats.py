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

from tunesmith.data.readers import Record, read_records, require_field
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
    path: str | Path, fmt: str = "auto", file_format: str = "auto"
) -> Iterator[Conversation]:
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(path, None, f"unknown chat format {fmt!r}; valid formats: auto, {', '.join(FORMATS)}")
    chosen = None if fmt == "auto" else fmt
    for record in read_records(path, file_format):
        if chosen is None:
            chosen = detect_format(record.fields)
            if chosen is None:
                found = ", ".join(map(str, record.fields)) or "none"
                raise record.error(
                    "cannot tell the chat format: expected a `messages` list (OpenAI), `conversations` (ShareGPT), "
                    f"`instruction` + `output` (alpaca) or `prompt` + `completion` (fields found: {found})"
                )
        messages = _PARSERS[chosen](record)
        _check(record, messages)
        yield Conversation(tuple(messages), record.path, record.line, record.unit)


def _text(record: Record, value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise record.error(f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise record.error(f"{where} is empty")
    return value


def _openai(record: Record) -> list[dict[str, str]]:
    messages = require_field(record, "messages")
    if not isinstance(messages, list):
        raise record.error(f'"messages" must be a list of messages, got {type(messages).__name__}')
    out = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise record.error(f"message {i} must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise record.error(f"message {i}: unknown role {role!r} (roles: {', '.join(ROLES)})")
        out.append({"role": role, "content": _text(record, message.get("content"), f"message {i} content")})
    return out


def _sharegpt(record: Record) -> list[dict[str, str]]:
    turns = require_field(record, "conversations")
    if not isinstance(turns, list):
        raise record.error(f'"conversations" must be a list of turns, got {type(turns).__name__}')
    out = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise record.error(f"turn {i} must be an object with from and value")
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(str(speaker).lower()) if isinstance(speaker, str) else None
        if role is None:
            raise record.error(f"turn {i}: unknown speaker {speaker!r} (known: {', '.join(SHAREGPT_ROLES)})")
        out.append({"role": role, "content": _text(record, turn.get("value"), f"turn {i} value")})
    return out


def _alpaca(record: Record) -> list[dict[str, str]]:
    f = record.fields
    instruction = _text(record, require_field(record, "instruction"), '"instruction"')
    extra = f.get("input")
    if extra is not None and not isinstance(extra, str):
        raise record.error(f'"input" must be a string, got {type(extra).__name__}')
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    out = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": _text(record, require_field(record, "output"), '"output"')},
    ]
    if f.get("system") is not None:
        out.insert(0, {"role": "system", "content": _text(record, f["system"], '"system"')})
    return out


def _prompt_completion(record: Record) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": _text(record, require_field(record, "prompt"), '"prompt"')},
        {"role": "assistant", "content": _text(record, require_field(record, "completion"), '"completion"')},
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
