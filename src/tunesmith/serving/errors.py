"""What an endpoint refuses (ApiError, answered in OpenAI's error shape by guard.py's handlers), the checks
every text input gets, and how a server fault is logged."""

from __future__ import annotations

import sys
import traceback
from typing import Any

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


def paired_inputs(
    texts: list[str], pairs: list[str] | None, reads_pairs: bool, settings: ServeSettings
) -> list[Any]:
    """What the model is given: the texts, or for a model that reads pairs of texts (task.text_pair_column)
    each text with its `text_pair`, checked as the texts are."""
    if not reads_pairs:
        if pairs is not None:
            raise ApiError(422, "text_pair: this model reads one text an input", "invalid_body")
        return list(texts)
    if pairs is None or len(pairs) != len(texts):
        raise ApiError(
            422,
            "text_pair: this model reads pairs of texts: give one text_pair for each input",
            "invalid_body",
        )
    for i, text in enumerate(pairs):
        check_text(text, settings, f"text_pair[{i}]")
    return [(text, pair) for text, pair in zip(texts, pairs, strict=True)]


def log_fault(error_id: str, path: str, exc: BaseException) -> None:
    """A server fault, on stderr with its traceback and the id its 500 answer carries."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    print(f"tunesmith serve: {error_id} {path} failed:\n{''.join(lines)}", file=sys.stderr, flush=True)
