"""Examples with (almost) nothing to learn from: an input of fewer than `check.min_words` words or with no
letter or digit at all, an answer with no letter or digit, and an answer identical to its prompt. (Short
answers are fine: many good answers are one word.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding, Tally, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView


@CHECKS.register("short")
class ShortExamples(Check):
    kinds = ("short",)

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.totals: Counter[str] = Counter()
        self.found = Tally(cfg.examples_shown)

    def add(self, split: str, view: ExampleView) -> None:
        self.totals[split] += 1
        problem = self._problem(view)
        if problem is not None:
            self.found.add((split, problem), f"{view.where}: {_quote(view.input)}")

    def _problem(self, view: ExampleView) -> str | None:
        minimum = self.cfg.min_words
        if len(view.input_words) < minimum:
            return f"inputs of fewer than {minimum} words" if view.input_words else "inputs with no word"
        if view.target_is_label or view.target is None:
            return None
        if not view.target_words:
            return "answers with no word"
        if view.target_words == view.input_words:
            return "answers identical to their prompt"
        return None

    def findings(self) -> list[Finding]:
        return [
            Finding(
                "warning",
                "short",
                f"{split}: {n} examples ({share(n, self.totals[split])}) are {what}: little or nothing to learn",
                self.found.where[(split, what)],
                n,
            )
            for (split, what), n in self.found.counts.items()
        ]


def _quote(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
