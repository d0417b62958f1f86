"""Labels of a multi-label set (any number of labels a text): labels too rare to learn, labels that tell
nothing, and labels that always come together.

- rare_label: a label fewer than check.min_class_examples training examples have (its threshold, tuned on
  validation, rests on a handful of examples, and its F1 counts as much as a common label's in macro F1);
- constant_label: a label every training example has: nothing to learn, always predicted;
- inseparable_labels: two labels that each occur on at least check.min_class_examples training examples and
  never one without the other: the model cannot learn to tell them apart; merge them, or add examples that
  have one only.
The report's stats: each split's examples without any label, and labels per example.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from tunesmith.data.checks.base import Check, Finding, plural, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView


@CHECKS.register("label_sets")
class LabelSets(Check):
    kinds = ("rare_label", "constant_label", "inseparable_labels")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.examples: Counter[str] = Counter()
        self.unlabelled: Counter[str] = Counter()
        self.assigned: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.sets: dict[str, set[int]] = defaultdict(set)
        """Training label -> the indices of the training examples that have it."""

    def add(self, split: str, view: ExampleView) -> None:
        if view.labels is None:
            return
        self.examples[split] += 1
        self.assigned[split] += len(view.labels)
        if not view.labels:
            self.unlabelled[split] += 1
        if split == "train":
            for label in view.labels:
                self.counts[label] += 1
                self.sets[label].add(self.examples[split])

    def findings(self) -> list[Finding]:
        total = self.examples["train"]
        if not total:
            return []
        out = []
        least = self.cfg.min_class_examples
        rare = sorted((n, label) for label, n in self.counts.items() if n < least)
        if rare:
            listed = ", ".join(f'"{label}" {n}' for n, label in rare[:10])
            out.append(
                Finding(
                    "warning",
                    "rare_label",
                    f"train: {len(rare)} of {len(self.counts)} labels are on fewer than {least} examples "
                    f"({listed}): too few to learn, or to tune a threshold on; collect more or drop them",
                    count=sum(n for n, _ in rare),
                )
            )
        for label in sorted(label for label, n in self.counts.items() if n == total):
            out.append(
                Finding(
                    "warning",
                    "constant_label",
                    f'train: every example has the label "{label}": there is nothing to learn about it, and it '
                    "will be predicted for every text",
                    count=total,
                )
            )
        out.extend(self._inseparable(least))
        return out

    def _inseparable(self, least: int) -> list[Finding]:
        by_members: dict[frozenset[int], list[str]] = defaultdict(list)
        for label, members in self.sets.items():
            if least <= len(members) < self.examples["train"]:
                by_members[frozenset(members)].append(label)
        return [
            Finding(
                "warning",
                "inseparable_labels",
                f"train: the labels {', '.join(f'{x!r}' for x in sorted(labels))} are on the same "
                f"{plural(len(members), 'example')}, never one without the other: the model cannot tell them "
                "apart; merge them, or add examples that have only one",
                count=len(members),
            )
            for members, labels in by_members.items()
            if len(labels) > 1
        ]

    def stats(self) -> dict[str, Any]:
        return {
            split: {
                "examples": n,
                "without_labels": self.unlabelled[split],
                "without_labels_share": share(self.unlabelled[split], n),
                "labels_per_example": round(self.assigned[split] / n, 3),
            }
            for split, n in self.examples.items()
        }
