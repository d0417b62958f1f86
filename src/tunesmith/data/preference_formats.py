"""Preference data in the shapes people have it, read into one: the prompt conversation, and either a chosen
and a rejected answer (pairs, for DPO, IPO, ORPO, SimPO) or one answer labelled desirable or not (KTO).

    trl      {"prompt": "..." or messages, "chosen": "..." or messages, "rejected": "..." or messages}
             (TRL's format; without "prompt", chosen and rejected are whole conversations that share it)
    openai   {"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", ...}],
              "non_preferred_output": [...]}    (OpenAI's DPO fine-tuning format)
    kto      {"prompt": "..." or messages, "completion": "..." or messages, "label": true | false}

`auto` takes the format from the first record's fields; every record must then have that shape. Each
structural fault names its file and line: an empty side, chosen equal to rejected, a prompt that does not end
with a user turn (where the answers start), two conversations that part before their last answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.chat_formats import ROLES, text_value
from tunesmith.data.readers import FileFormat, OnError, Record, parse_each, read_records, require_field
from tunesmith.errors import DataError

FORMATS = ("trl", "openai", "kto")


@dataclass(frozen=True)
class PreferenceExample:
    prompt: tuple[dict[str, str], ...]
    """The conversation the answers reply to; its last turn is the user's."""
    chosen: str
    """The preferred answer (KTO: the one answer)."""
    rejected: str | None
    """The other answer of a pair; None for KTO."""
    desirable: bool | None
    """KTO's label; None for pairs."""
    path: Path
    line: int
    unit: str = "line"


def detect_format(fields: dict[str, Any]) -> str | None:
    if "preferred_output" in fields or "non_preferred_output" in fields:
        return "openai"
    if "chosen" in fields or "rejected" in fields:
        return "trl"
    if "completion" in fields and "label" in fields:
        return "kto"
    return None


def read_preferences(
    path: str | Path,
    fmt: str = "auto",
    file_format: str | FileFormat = "auto",
    on_error: OnError | None = None,
) -> Iterator[PreferenceExample]:
    """Examples streamed from a file; see `read_records` for `on_error`."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(
            path, None, f"unknown preference format {fmt!r}; valid formats: auto, {', '.join(FORMATS)}"
        )
    chosen_format = None if fmt == "auto" else fmt

    def parse(record: Record) -> PreferenceExample:
        nonlocal chosen_format
        shape = chosen_format or detect_format(record.fields)
        if shape is None:
            found = ", ".join(map(str, record.fields)) or "none"
            raise record.error(
                "cannot tell the preference format: expected `chosen` + `rejected` (TRL), `preferred_output` + "
                f"`non_preferred_output` (OpenAI) or `completion` + `label` (KTO) (fields found: {found})",
                kind="preference_structure",
            )
        try:
            example = _PARSERS[shape](record)
        except DataError as exc:
            exc.kind = "preference_structure" if exc.kind == "invalid" else exc.kind
            raise
        chosen_format = shape
        return example

    return parse_each(read_records(path, file_format, on_error), parse, on_error)


def _messages(record: Record, value: Any, where: str) -> list[dict[str, str]]:
    """A string (one user turn) or a list of {role, content} messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": text_value(record, value, where)}]
    if not isinstance(value, list) or not value:
        raise record.error(f"{where} must be a string or a non-empty list of messages")
    out = []
    for i, turn in enumerate(value, start=1):
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ROLES:
            raise record.error(f"{where} message {i}: unknown role {role!r} (roles: {', '.join(ROLES)})")
        out.append(
            {"role": role, "content": text_value(record, turn.get("content"), f"{where} message {i} content")}
        )
    return out


def _answer(record: Record, value: Any, where: str) -> str:
    """An answer: a string, or a list holding one assistant message."""
    if isinstance(value, str):
        return text_value(record, value, where)
    turns = _messages(record, value, where)
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        raise record.error(f"{where} must be one assistant message (or a string)")
    return turns[0]["content"]


def _prompt(record: Record, value: Any, where: str) -> tuple[dict[str, str], ...]:
    turns = _messages(record, value, where)
    if turns[-1]["role"] != "user":
        raise record.error(
            f"{where} ends with a {turns[-1]['role']} turn; the answers must reply to the user's last turn"
        )
    if any(t["role"] == "system" for t in turns[1:]):
        raise record.error(f"{where}: a system message may only come first")
    return tuple(turns)


def _pair(
    record: Record, prompt: tuple[dict[str, str], ...], chosen: str, rejected: str
) -> PreferenceExample:
    if chosen.strip() == rejected.strip():
        raise record.error("the chosen and rejected answers are the same: nothing to prefer")
    return PreferenceExample(prompt, chosen, rejected, None, record.path, record.line, record.unit)


def _trl(record: Record) -> PreferenceExample:
    chosen, rejected = require_field(record, "chosen"), require_field(record, "rejected")
    if "prompt" in record.fields:
        prompt = _prompt(record, record.fields["prompt"], '"prompt"')
        return _pair(
            record, prompt, _answer(record, chosen, '"chosen"'), _answer(record, rejected, '"rejected"')
        )
    whole = [
        _messages(record, side, f'"{name}"') for side, name in ((chosen, "chosen"), (rejected, "rejected"))
    ]
    if whole[0][:-1] != whole[1][:-1]:
        raise record.error(
            'without "prompt", "chosen" and "rejected" must be the same conversation up to their last answer'
        )
    if any(turns[-1]["role"] != "assistant" for turns in whole):
        raise record.error('"chosen" and "rejected" must each end with an assistant answer')
    return _pair(
        record, _prompt(record, whole[0][:-1], "the shared conversation"), *(t[-1]["content"] for t in whole)
    )


def _openai(record: Record) -> PreferenceExample:
    given = require_field(record, "input")
    if not isinstance(given, dict) or "messages" not in given:
        raise record.error('"input" must be an object with a "messages" list')
    prompt = _prompt(record, given["messages"], '"input.messages"')
    chosen = _answer(record, require_field(record, "preferred_output"), '"preferred_output"')
    return _pair(
        record,
        prompt,
        chosen,
        _answer(record, require_field(record, "non_preferred_output"), '"non_preferred_output"'),
    )


def _kto(record: Record) -> PreferenceExample:
    prompt = _prompt(record, require_field(record, "prompt"), '"prompt"')
    completion = _answer(record, require_field(record, "completion"), '"completion"')
    label = require_field(record, "label")
    if not isinstance(label, bool):
        raise record.error(f'"label" must be true (desirable) or false (undesirable), got {label!r}')
    return PreferenceExample(prompt, completion, None, label, record.path, record.line, record.unit)


_PARSERS = {"trl": _trl, "openai": _openai, "kto": _kto}
