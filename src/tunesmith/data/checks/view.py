"""What the data check sees of one example. A task turns its examples into these; the checks know no task."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tunesmith.data.checks.text import words


@dataclass(frozen=True)
class TokenCount:
    """An example's length in the model's tokens, and whether model.max_length cuts some of it off.
    `problem` says why the example cannot be trained on at all (e.g. its answer is cut off entirely)."""

    tokens: int
    truncated: bool
    problem: str | None = None
    problem_kind: str = "answer_cut_off"
    cut: str = "their end"
    """What a truncated example loses, as the data check says it."""


@dataclass
class ExampleView:
    path: Path
    line: int
    unit: str
    input: str
    """What the model reads: the text to classify, the prompt turns, the document, question and context."""
    target: str | None
    """What it learns to give: the label (classification) or the answer text."""
    target_is_label: bool
    tokens: TokenCount | None = None
    rejected: str | None = None
    """Preference pairs: the answer people preferred less (`target` is the chosen one)."""
    retrieval: bool = False
    """Retrieval pairs: `input` is the query (anchor), `target` the document that answers it (positive)."""
    labels: tuple[str, ...] | None = None
    """Multi-label: the example's labels (any number; `target` is them joined, for duplicate checks)."""
    value: float | None = None
    """Regression: the example's numeric target (`target` is then None: a number is not a label)."""

    @property
    def where(self) -> str:
        return f"{self.path.name} {self.unit} {self.line}"

    @cached_property
    def input_words(self) -> list[str]:
        return words(self.input)

    @cached_property
    def target_words(self) -> list[str]:
        return words(self.target or "") if not self.target_is_label else []

    @cached_property
    def rejected_words(self) -> list[str]:
        return words(self.rejected or "")
