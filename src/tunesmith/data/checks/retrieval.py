"""Retrieval pairs (an anchor and the document that answers it) a model learns little or the wrong thing from.

- anchor_is_positive: the anchor and its positive are the same text (after normalising case, punctuation
  and spacing): a text is trivially nearest to itself, so the pair teaches nothing.
- shared_positive: one document is the positive of SHARED_ANCHORS or more training anchors (an FAQ answer
  many questions lead to). With in-batch negatives those pairs cannot share a batch (each would be the
  others' negative), so where such a document has more anchors than an epoch has batches, the extra pairs
  sit that epoch out (data/batch_order.py); and a model can learn to send every query to it.
- positive_leakage: a validation or test document that is also a training positive: the model was trained to
  find it, so retrieval on that split overstates how it does on documents it never saw.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding, Tally, plural, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

SHARED_ANCHORS = 10
"""A training positive with at least this many anchors is reported: enough that a batch of the usual size
(16 to 64) seldom fits them all apart, and beyond the two or three paraphrases a set often has per answer."""


@CHECKS.register("retrieval")
class RetrievalPairs(Check):
    kinds = ("anchor_is_positive", "shared_positive", "positive_leakage")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.same = Tally(cfg.examples_shown)
        self.leaked = Tally(cfg.examples_shown)
        self.totals: Counter[str] = Counter()
        self.train_positives: Counter[int] = Counter()
        self.first_text: dict[int, str] = {}

    def add(self, split: str, view: ExampleView) -> None:
        if not view.retrieval or view.target is None:
            return
        self.totals[split] += 1
        if view.input_words == view.target_words:
            self.same.add(split, view.where)
        key = hash(" ".join(view.target_words))
        if split == "train":
            self.train_positives[key] += 1
            self.first_text.setdefault(key, view.target)
        elif key in self.train_positives:
            self.leaked.add(split, view.where)

    def findings(self) -> list[Finding]:
        out = [
            Finding(
                "warning",
                "anchor_is_positive",
                f"{split}: {plural(n, 'pair')} ({share(n, self.totals[split])}) have an anchor that is its own "
                "positive (same words): a text is trivially nearest to itself, so these teach nothing",
                self.same.where[split],
                n,
            )
            for split, n in self.same.counts.items()
        ]
        shared = [(k, n) for k, n in self.train_positives.most_common() if n >= SHARED_ANCHORS]
        if shared:
            pairs = sum(n for _, n in shared)
            top, most = shared[0]
            out.append(
                Finding(
                    "warning",
                    "shared_positive",
                    f"train: {plural(len(shared), 'document')} are the positive of {SHARED_ANCHORS} or more "
                    f"anchors each ({share(pairs, self.totals['train'])} of the pairs; the most, "
                    f"{self.first_text[top][:60]!r}, of {most}): such pairs cannot share a batch (each would be "
                    "the others' negative), so where one has more anchors than the epoch has batches some sit "
                    "the epoch out; consider fewer paraphrases per answer, or task.loss=cosent with scores",
                    [],
                    pairs,
                )
            )
        out.extend(
            Finding(
                "warning",
                "positive_leakage",
                f"{split}: {plural(n, 'positive')} of {self.totals[split]:,} ({share(n, self.totals[split])}) are "
                f"also training positives: the model was trained to find them, so the {split} retrieval scores "
                "overstate how it finds documents it never saw",
                self.leaked.where[split],
                n,
            )
            for split, n in self.leaked.counts.items()
        )
        return out
