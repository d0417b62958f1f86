"""What a check is and what it reports."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tunesmith.data.checks.view import ExampleView
from tunesmith.sections import CheckConfig


@dataclass
class Finding:
    """One problem: an error (training refuses) or a warning (training goes on, the report keeps it)."""

    level: Literal["error", "warning"]
    kind: str
    message: str
    """What is wrong, with its numbers; for an error of one record, prefixed by its file and line."""
    where: list[str] = field(default_factory=list)
    """Examples of where it occurs (file and line), at most `check.examples_shown`."""
    count: int = 1
    """How many examples (or records) it concerns."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "kind": self.kind,
            "message": self.message,
            "count": self.count,
            "where": self.where,
        }


class Check(ABC):
    """Sees every readable example of every split once (train first), then reports."""

    kinds: ClassVar[tuple[str, ...]]
    """Warning kinds it can report (names for `check.ignore`)."""

    def __init__(self, cfg: CheckConfig):
        self.cfg = cfg

    @abstractmethod
    def add(self, split: str, view: ExampleView) -> None: ...

    @abstractmethod
    def findings(self) -> list[Finding]: ...

    def stats(self) -> dict[str, Any]:
        """Numbers for the report even when nothing is wrong."""
        return {}


class Tally:
    """How many examples each key (a split, a kind of problem) has, and the first few places it occurs."""

    def __init__(self, shown: int):
        self.shown = shown
        self.counts: Counter[Hashable] = Counter()
        self.where: dict[Hashable, list[str]] = {}

    def add(self, key: Hashable, where: str) -> None:
        self.counts[key] += 1
        places = self.where.setdefault(key, [])
        if len(places) < self.shown:
            places.append(where)


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
