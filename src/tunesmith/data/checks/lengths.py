"""Length in the model's own tokens: the distribution per split, and how many examples model.max_length cuts.

(An example whose answer is cut off entirely is an error the gate reports; here are the ones that lose only
part of their text: the end of a long text to classify, the later turns of a long chat.)
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from tunesmith.data.checks.base import Check, Finding, Tally, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView


@CHECKS.register("lengths")
class TokenLengths(Check):
    kinds = ("truncation",)

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.tokens: dict[str, array] = {}
        self.truncated = Tally(cfg.examples_shown)
        self.cut = "their end"

    def add(self, split: str, view: ExampleView) -> None:
        if view.tokens is None:
            return
        self.tokens.setdefault(split, array("q")).append(view.tokens.tokens)
        if view.tokens.truncated:
            self.truncated.add(split, f"{view.where}: {view.tokens.tokens} tokens")
            self.cut = view.tokens.cut

    def findings(self) -> list[Finding]:
        out = []
        for split, cut in self.truncated.counts.items():
            lengths = np.frombuffer(self.tokens[split], dtype=np.int64)
            total = len(lengths)
            cover = int(np.percentile(lengths, 99, method="higher"))
            out.append(
                Finding(
                    "warning",
                    "truncation",
                    f"{split}: {cut} of {total} examples ({share(cut, total)}) are longer than model.max_length "
                    f"and lose {self.cut} (longest {int(lengths.max())} tokens); model.max_length={cover} would "
                    "keep 99% whole",
                    self.truncated.where[split],
                    cut,
                )
            )
        return out

    def stats(self) -> dict[str, Any]:
        out = {}
        for split, values in self.tokens.items():
            lengths = np.frombuffer(values, dtype=np.int64)
            p50, p95, p99 = (int(np.percentile(lengths, q, method="higher")) for q in (50, 95, 99))
            out[split] = {
                "min": int(lengths.min()),
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "max": int(lengths.max()),
                "truncated": self.truncated.counts[split],
            }
        return out
