"""Narrow data: a model tuned on few templates or a small vocabulary learns the template, and can forget
what it knew. Measured on the training split:

- openings: the share of inputs that start with the same `check.prefix_words` words (one form letter, one
  ticket template), and for tasks that write text the share of answers that open the same way ("Sure! Here
  is..."), which the model will learn to say every time;
- word diversity: distinct words per word in consecutive windows of 1,000 words of the inputs and answers,
  averaged (the moving-average type-token ratio; unlike the plain ratio it does not fall as the data grows). General
  English text scores about 0.4-0.5; generated or templated text far less.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

WINDOW = 1000
MIN_EXAMPLES = 20
"""Fewer training examples than this are too few to call narrow."""
MAX_OPENINGS = 200_000
"""Distinct openings tracked exactly; past that only those already seen are counted (the top ones are
found early in any file where one dominates)."""


class _Openings:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0

    def add(self, opening: str) -> None:
        self.total += 1
        if opening in self.counts or len(self.counts) < MAX_OPENINGS:
            self.counts[opening] += 1

    def top(self, n: int = 5) -> list[dict[str, Any]]:
        return [{"opening": o, "count": c, "share": c / self.total} for o, c in self.counts.most_common(n)]


@CHECKS.register("narrowness")
class Narrowness(Check):
    kinds = ("narrow",)

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.inputs = _Openings()
        self.answers = _Openings()
        self.window: list[str] = []
        self.window_scores: list[float] = []
        self.file = ""

    def add(self, split: str, view: ExampleView) -> None:
        if split != "train":
            return
        self.file = view.path.name
        n = self.cfg.prefix_words
        self.inputs.add(" ".join(view.input_words[:n]))
        if not view.target_is_label and view.target_words:
            self.answers.add(" ".join(view.target_words[:n]))
        self.window.extend(view.input_words)
        self.window.extend(view.target_words)
        while len(self.window) >= WINDOW:
            chunk = self.window[:WINDOW]
            self.window_scores.append(len(set(chunk)) / WINDOW)
            del self.window[:WINDOW]

    def diversity(self) -> float | None:
        if self.window_scores:
            return sum(self.window_scores) / len(self.window_scores)
        if len(self.window) >= 100:  # less than one window: the plain ratio of what there is
            return len(set(self.window)) / len(self.window)
        return None

    def findings(self) -> list[Finding]:
        if self.inputs.total < MIN_EXAMPLES:
            return []
        out = []
        limit = self.cfg.max_prefix_share
        for what, openings in (("inputs", self.inputs), ("answers", self.answers)):
            if openings.total < MIN_EXAMPLES:
                continue
            (top,) = openings.top(1)
            if top["share"] > limit:
                out.append(
                    Finding(
                        "warning",
                        "narrow",
                        f'train: {share(top["count"], openings.total)} of the {what} open with "{top["opening"]}" '
                        f"(over {limit:.0%}); the model learns the template more than the content. "
                        + (
                            "Vary how answers start"
                            if what == "answers"
                            else "Add examples written other ways"
                        ),
                        count=top["count"],
                    )
                )
        diversity = self.diversity()
        if diversity is not None and diversity < self.cfg.min_word_diversity:
            out.append(
                Finding(
                    "warning",
                    "narrow",
                    f"train: word diversity {diversity:.2f} (distinct words per word over 1,000-word windows; "
                    f"general English about 0.4-0.5, flagged under {self.cfg.min_word_diversity}): a small "
                    "vocabulary; the tuned model may lose general ability. Add more varied examples",
                    count=self.inputs.total,
                )
            )
        return out

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"word_diversity": self.diversity(), "input_openings": self.inputs.top()}
        if self.answers.total:
            out["answer_openings"] = self.answers.top()
        return out
