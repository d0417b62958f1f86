"""Duplicates inside a split, the same input across splits (leakage), and the same input with different labels.

Only 64-bit hashes and line numbers are kept per example (about 50 bytes), so a file of millions of rows is
checked in bounded memory; groups are found at the end with numpy. "Exact" compares the raw text; "near"
compares it after normalising case, punctuation and spacing (data/checks/text.py).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunesmith.data.checks.base import Check, Finding, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class _Split:
    file: str = ""
    unit: str = "line"
    lines: array = field(default_factory=lambda: array("q"))
    example_exact: array = field(default_factory=lambda: array("q"))
    example_near: array = field(default_factory=lambda: array("q"))
    input_exact: array = field(default_factory=lambda: array("q"))
    input_near: array = field(default_factory=lambda: array("q"))
    target: array = field(default_factory=lambda: array("q"))

    def np(self, name: str) -> np.ndarray:
        return (
            np.frombuffer(getattr(self, name), dtype=np.int64) if len(self.lines) else np.zeros(0, np.int64)
        )


def _repeats(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows that repeat an earlier row's key, and the index of that earlier (first) row."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    earlier = first[inverse]
    rows = np.nonzero(earlier != np.arange(len(keys)))[0]
    return rows, earlier[rows]


@CHECKS.register("duplicates")
class Duplicates(Check):
    kinds = ("duplicates", "leakage", "conflicts")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.splits: dict[str, _Split] = {}
        self.label_names: dict[int, str] = {}
        self.labelled = False

    def add(self, split: str, view: ExampleView) -> None:
        s = self.splits.get(split)
        if s is None:
            s = self.splits[split] = _Split(view.path.name, view.unit)
        near_input = " ".join(view.input_words)
        target = view.target or ""
        near_target = target if view.target_is_label else " ".join(view.target_words)
        s.lines.append(view.line)
        s.input_exact.append(hash(view.input))
        s.input_near.append(hash(near_input))
        s.example_exact.append(hash((view.input, target)))
        s.example_near.append(hash((near_input, near_target)))
        target_hash = hash(target)
        s.target.append(target_hash)
        if view.target_is_label:
            self.labelled = True
            self.label_names.setdefault(target_hash, target)

    def findings(self) -> list[Finding]:
        out = []
        for name, s in self.splits.items():
            out.extend(self._within(name, s))
        out.extend(self._leakage())
        if self.labelled:
            out.extend(self._conflicts())
        return out

    def _within(self, name: str, s: _Split) -> list[Finding]:
        total = len(s.lines)
        exact_rows, exact_first = _repeats(s.np("example_exact"))
        near_rows, near_first = _repeats(s.np("example_near"))
        if not len(near_rows):
            return []
        lines = s.np("lines")
        shown = [
            f"{s.file} {s.unit} {lines[r]} repeats {s.unit} {lines[f]}"
            for r, f in zip(near_rows[: self.cfg.examples_shown], near_first, strict=False)
        ]
        near_only = len(near_rows) - len(exact_rows)
        what = "examples" if self.labelled else "examples (input and answer)"
        return [
            Finding(
                "warning",
                "duplicates",
                f"{name}: {len(near_rows)} of {total} {what} ({share(len(near_rows), total)}) repeat an earlier "
                f"one: {len(exact_rows)} exactly, {near_only} after normalising case, punctuation and "
                "spacing; duplicates weigh those examples more and inflate validation scores",
                shown,
                len(near_rows),
            )
        ]

    def _leakage(self) -> list[Finding]:
        out = []
        names = [n for n in SPLIT_ORDER if n in self.splits]
        for i, held in enumerate(names[1:], start=1):
            for seen in names[:i]:
                out.extend(self._leak(held, seen))
        return out

    def _leak(self, held_name: str, seen_name: str) -> list[Finding]:
        held, seen = self.splits[held_name], self.splits[seen_name]
        held_near, seen_near = held.np("input_near"), seen.np("input_near")
        inside = np.isin(held_near, seen_near)
        count = int(inside.sum())
        if not count:
            return []
        exact = int(np.isin(held.np("input_exact")[inside], seen.np("input_exact")).sum())
        keys, first = np.unique(seen_near, return_index=True)
        rows = np.nonzero(inside)[0][: self.cfg.examples_shown]
        matches = first[np.searchsorted(keys, held_near[rows])]
        held_lines, seen_lines = held.np("lines"), seen.np("lines")
        shown = [
            f"{held.file} {held.unit} {held_lines[r]} = {seen.file} {seen.unit} {seen_lines[m]}"
            for r, m in zip(rows, matches, strict=True)
        ]
        total = len(held.lines)
        return [
            Finding(
                "warning",
                "leakage",
                f"{held_name}: {count} of {total} inputs ({share(count, total)}) also occur in {seen_name} "
                f"({exact} exactly, {count - exact} after normalising); the {held_name} score will overstate "
                "how the model does on new data",
                shown,
                count,
            )
        ]

    def _conflicts(self) -> list[Finding]:
        out = []
        for name, s in self.splits.items():
            inputs, targets, lines = s.np("input_near"), s.np("target"), s.np("lines")
            pairs = np.unique(np.stack([inputs, targets], axis=1), axis=0)
            keys, counts = np.unique(pairs[:, 0], return_counts=True)
            clashing = keys[counts > 1]
            if not len(clashing):
                continue
            rows = np.nonzero(np.isin(inputs, clashing))[0]
            shown = []
            for key in clashing[: self.cfg.examples_shown]:
                group = rows[inputs[rows] == key]
                labels = sorted({self.label_names[int(t)] for t in targets[group]})
                where = ", ".join(str(x) for x in lines[group][:4])
                shown.append(f"{s.file} {s.unit}s {where}: {' / '.join(labels)}")
            out.append(
                Finding(
                    "warning",
                    "conflicts",
                    f"{name}: {len(clashing)} texts occur with different labels ({len(rows)} examples); "
                    "the model cannot get them all right: relabel or merge them",
                    shown,
                    len(rows),
                )
            )
        return out

    def stats(self) -> dict[str, Any]:
        out = {}
        for name, s in self.splits.items():
            out[name] = {
                "examples": len(s.lines),
                "exact_duplicates": len(_repeats(s.np("example_exact"))[0]),
                "near_duplicates": len(_repeats(s.np("example_near"))[0]),
            }
        return out
