"""Text as it is generated: decoded token by token, cut at the first stop string, and handed out in pieces
that are safe to show (no half-decoded character, no beginning of a stop string that may still complete)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TextStream:
    def __init__(self, tokenizer: Any, stops: list[str], emit: Callable[[str], None] | None = None):
        self.tokenizer = tokenizer
        self.stops = stops
        self.emit = emit
        self.tokens: list[int] = []
        self.text = ""
        self.sent = 0
        self.stopped = False
        self.hit_stop = False

    def put(self, token: int) -> None:
        if self.stopped:
            return
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).lstrip()
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            text, self.stopped, self.hit_stop = text[:cut], True, True
        self.text = text
        self._send(len(text) if self.stopped else self._safe_length(text))

    def finish(self) -> str:
        """The whole answer; anything held back is sent."""
        self.text = self.text.rstrip()
        self._send(len(self.text))
        return self.text

    def cancel(self) -> None:
        """The client went away: stop generating at the next token."""
        self.stopped = True

    def _safe_length(self, text: str) -> int:
        end = len(text)
        while end and text[end - 1] == "\ufffd":  # a character whose bytes are not all generated yet
            end -= 1
        for stop in self.stops:  # hold back a tail that could still become a stop string
            for k in range(min(len(stop) - 1, end), 0, -1):
                if text[end - k : end] == stop[:k]:
                    end -= k
                    break
        return end

    def _send(self, upto: int) -> None:
        if self.emit is not None and upto > self.sent:
            self.emit(self.text[self.sent : upto])
            self.sent = upto
