"""Preference pairs a model can learn the wrong lesson from.

- length_shortcut: in most training pairs the chosen answer is the longer one (or in most, the shorter). DPO
  then rewards length itself, the best-known failure of preference tuning (Singhal et al. 2023, "A Long Way
  to Go": in the usual public sets the chosen answer is longer in about 60% of pairs, and the tuned models
  mostly learned to write more). Flagged beyond LONGER_SHARE either way; the fix is pairs where the shorter
  answer wins (or task.loss simpo, which averages per token).
- near_identical_pairs: chosen and rejected with the same words, differing only in case, punctuation or
  spacing: the preference rests on a detail that is seldom the one meant (a stray space a tool added).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding, Tally, plural, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

LONGER_SHARE = 0.75
"""A share of training pairs above this whose chosen answer is the longer (or below 1 minus it) is flagged:
well beyond the ~60% of the public sets, so a set built as most are passes, and one built by a rule
("the long answer is the good one") does not."""
MIN_PAIRS = 20
"""Fewer training pairs than this say too little about a length preference to flag it."""


@CHECKS.register("pairs")
class PreferencePairs(Check):
    kinds = ("length_shortcut", "near_identical_pairs")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.lengths: Counter[str] = Counter()
        self.same_words = Tally(cfg.examples_shown)
        self.totals: Counter[str] = Counter()

    def add(self, split: str, view: ExampleView) -> None:
        if view.rejected is None:
            return
        self.totals[split] += 1
        chosen, rejected = view.target_words, view.rejected_words
        if chosen == rejected:
            self.same_words.add(split, view.where)
        elif split == "train" and len(chosen) != len(rejected):
            self.lengths["longer" if len(chosen) > len(rejected) else "shorter"] += 1

    def findings(self) -> list[Finding]:
        out = [
            Finding(
                "warning",
                "near_identical_pairs",
                f"{split}: {plural(n, 'pair')} ({share(n, self.totals[split])}) have a chosen and a rejected "
                "answer with the same words, differing only in case, punctuation or spacing: the model learns "
                "that detail; check that it is the preference meant",
                self.same_words.where[split],
                n,
            )
            for split, n in self.same_words.counts.items()
        ]
        total = self.totals["train"]
        longer = self.lengths["longer"]
        if total >= MIN_PAIRS and not (1 - LONGER_SHARE) * total <= longer <= LONGER_SHARE * total:
            side = "longer" if longer > LONGER_SHARE * total else "shorter"
            n = self.lengths[side]
            out.append(
                Finding(
                    "warning",
                    "length_shortcut",
                    f"train: in {plural(n, 'pair')} of {total:,} ({share(n, total)}) the chosen answer is the "
                    f"{side} one: the model can learn that {side} wins rather than what makes an answer "
                    "better; add pairs where it does not, or use task.loss simpo (it scores per token)",
                    [],
                    n,
                )
            )
        return out

    def stats(self) -> dict[str, Any]:
        total = self.totals["train"]
        return {"chosen_longer_share": round(self.lengths["longer"] / total, 3)} if total else {}
