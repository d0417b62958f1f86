"""What an endpoint refuses (ApiError, answered in OpenAI's error shape by guard.py's handlers), the checks
every text input gets, and how a server fault is logged."""

from __future__ import annotations

import sys
import traceback

from tunesmith.serving.settings import ServeSettings


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


def check_text(text: str, settings: ServeSettings, where: str) -> None:
    """A text input within --max-input-chars and not blank (its Unicode is checked by the schema)."""
    if len(text) > settings.max_input_chars:
        raise ApiError(
            413, f"{where} is {len(text)} characters; at most {settings.max_input_chars}", "input_too_long"
        )
    if not text.strip():
        raise ApiError(422, f"{where} is empty", "invalid_body")


def check_inputs(texts: list[str], settings: ServeSettings) -> None:
    """A request's list of texts: not empty, at most --max-inputs, each one passing check_text."""
    if not texts:
        raise ApiError(422, "input is an empty list", "invalid_body")
    if len(texts) > settings.max_inputs:
        raise ApiError(
            413, f"{len(texts)} inputs; at most {settings.max_inputs} per request", "too_many_inputs"
        )
    for i, text in enumerate(texts):
        check_text(text, settings, f"input[{i}]")


def log_fault(error_id: str, path: str, exc: BaseException) -> None:
    """A server fault, on stderr with its traceback and the id its 500 answer carries."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    print(f"tunesmith serve: {error_id} {path} failed:\n{''.join(lines)}", file=sys.stderr, flush=True)
