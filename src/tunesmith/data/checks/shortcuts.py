"""Shortcuts in labelled data: an opening (the first `check.prefix_words` words) shared by many training
examples that nearly always carry one label. A model learns that the opening gives the label away (a form
that only one team uses, a prefix a labelling tool added) and fails on the same request worded otherwise.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

MIN_SHARE = 0.05
"""Openings carried by fewer training examples than this share are too rare to matter."""
MIN_COUNT = 10
"""Nor are openings of fewer examples than this."""
MIN_EXAMPLES = 20
PURITY = 0.95
"""An opening whose examples carry one label at least this often is flagged."""
MAX_OPENINGS = 200_000


@CHECKS.register("shortcuts")
class Shortcuts(Check):
    kinds = ("shortcut",)

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.by_opening: dict[str, Counter[str]] = {}
        self.labels: Counter[str] = Counter()
        self.total = 0

    def add(self, split: str, view: ExampleView) -> None:
        if split != "train" or not view.target_is_label or view.target is None or view.labels is not None:
            return
        self.total += 1
        self.labels[view.target] += 1
        opening = " ".join(view.input_words[: self.cfg.prefix_words])
        counts = self.by_opening.get(opening)
        if counts is None:
            if len(self.by_opening) >= MAX_OPENINGS:
                return
            counts = self.by_opening[opening] = Counter()
        counts[view.target] += 1

    def findings(self) -> list[Finding]:
        if self.total < MIN_EXAMPLES or len(self.labels) < 2:
            return []
        out = []
        for opening, counts in self.by_opening.items():
            n = sum(counts.values())
            label, top = counts.most_common(1)[0]
            base_rate = self.labels[label] / self.total
            if n >= max(MIN_SHARE * self.total, MIN_COUNT) and top / n >= PURITY and base_rate < PURITY:
                out.append(
                    Finding(
                        "warning",
                        "shortcut",
                        f'train: {n} examples open with "{opening}" and {top / n:.0%} of them are "{label}" '
                        f"(against {base_rate:.0%} of all); the model may learn the opening instead of the "
                        "content. Reword some, or add other labels' examples that open this way",
                        count=n,
                    )
                )
        return sorted(out, key=lambda f: -f.count)[:5]
