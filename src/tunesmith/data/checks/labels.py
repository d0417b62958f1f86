"""Labels of a classification set: a single class or a label the training data never has (errors), class
imbalance and classes too small to learn or to validate on (warnings)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding, Tally, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView


@CHECKS.register("labels")
class Labels(Check):
    kinds = ("imbalance",)

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.counts: dict[str, Counter[str]] = {}
        self.files: dict[str, str] = {}
        self.unknown: dict[str, Counter[str]] = {}
        self.unknown_where = Tally(cfg.examples_shown)

    def add(self, split: str, view: ExampleView) -> None:
        if not view.target_is_label or view.target is None or view.labels is not None:
            return  # multi-label sets: checks/label_sets.py
        self.files.setdefault(split, view.path.name)
        counts = self.counts.setdefault(split, Counter())
        counts[view.target] += 1
        train = self.counts.get("train")
        if split != "train" and train is not None and view.target not in train:
            self.unknown.setdefault(split, Counter())[view.target] += 1
            self.unknown_where.add(split, f"{view.where}: {view.target}")

    def findings(self) -> list[Finding]:
        train = self.counts.get("train")
        if not train:
            return []
        out = []
        if len(train) == 1:
            (only,) = train
            out.append(
                Finding(
                    "error",
                    "labels",
                    f'{self.files["train"]}: every example has the label "{only}"; a classifier needs 2 or more',
                    count=train[only],
                )
            )
            return out
        for split, labels in self.unknown.items():
            count = sum(labels.values())
            where = self.unknown_where.where[split]
            out.append(
                Finding(
                    "error",
                    "labels",
                    f"{self.files[split]}: {count} examples have labels the training data never has "
                    f"({', '.join(sorted(labels))}); training labels: {', '.join(sorted(train))}",
                    where,
                    count,
                )
            )
        (top, most), *_ = train.most_common(1)
        least_label, least = min(train.items(), key=lambda kv: (kv[1], kv[0]))
        ratio = most / least
        if ratio > self.cfg.max_imbalance:
            out.append(
                Finding(
                    "warning",
                    "imbalance",
                    f'train: the largest class "{top}" has {ratio:.1f}x the examples of the smallest '
                    f'"{least_label}" ({most} vs {least}); macro F1 will show it. Collect more of the small '
                    "classes or merge them",
                    count=least,
                )
            )
        rare = sorted((n, label) for label, n in train.items() if n < self.cfg.min_class_examples)
        if rare:
            listed = ", ".join(f'"{label}" {n}' for n, label in rare[:10])
            out.append(
                Finding(
                    "warning",
                    "imbalance",
                    f"train: {len(rare)} of {len(train)} classes have fewer than {self.cfg.min_class_examples} "
                    f"examples ({listed}); too few to learn, and to split off a validation share",
                    count=sum(n for n, _ in rare),
                )
            )
        return out

    def stats(self) -> dict[str, Any]:
        return {
            split: {label: {"count": n, "share": share(n, sum(c.values()))} for label, n in c.most_common()}
            for split, c in self.counts.items()
        }
