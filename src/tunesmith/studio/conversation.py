"""The Try page's conversation with a chat run: kept in the page (a hidden field of JSON turns), read back
and checked on each message, as `tunesmith chat` keeps its list of turns."""

from __future__ import annotations

import json

from tunesmith.errors import UserError

ROLES = ("system", "user", "assistant")
MAX_TURNS = 40
"""Most turns a conversation on the page may hold (the run's max_length cuts the prompt long before)."""
MAX_CHARS = 20_000
"""Most characters of one turn."""


def read_conversation(text: str) -> list[dict[str, str]]:
    """The turns the page sent back; UserError for anything but a list of {role, content} turns."""
    if not text.strip():
        return []
    try:
        turns = json.loads(text)
    except json.JSONDecodeError:
        raise UserError("the conversation on the page is not valid JSON; start over") from None
    if not isinstance(turns, list) or len(turns) > MAX_TURNS:
        raise UserError(f"the conversation must be a list of at most {MAX_TURNS} turns; start over")
    for turn in turns:
        if (
            not isinstance(turn, dict)
            or set(turn) != {"role", "content"}
            or turn["role"] not in ROLES
            or not isinstance(turn["content"], str)
            or len(turn["content"]) > MAX_CHARS
        ):
            raise UserError("a turn of the conversation is not {role, content}; start over")
    return turns


def with_message(turns: list[dict[str, str]], system: str, message: str) -> list[dict[str, str]]:
    """The conversation with the user's new message (and, on the first turn, the system message)."""
    start = [{"role": "system", "content": system.strip()}] if system.strip() and not turns else []
    if len(message) > MAX_CHARS:
        raise UserError(f"a message of at most {MAX_CHARS:,} characters")
    return [*start, *turns, {"role": "user", "content": message.strip()}]
