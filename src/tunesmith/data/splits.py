"""Stratified train/validation/test splits with a seed, so the same file always gives the same splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def stratified_split(
    items: Sequence[T], labels: Sequence[str], fraction: float, seed: int
) -> tuple[list[T], list[T], bool]:
    """Split off `fraction` of items, keeping label shares. Returns (rest, held_out, stratified).

    Stratification needs at least two examples per class and one held-out slot per class; when the data
    cannot give that, the split is random (still seeded) and `stratified` is False so callers can say so.
    """
    from sklearn.model_selection import train_test_split  # a 1.5 s import `check` and `predict` skip

    if fraction <= 0 or len(items) < 2:
        return list(items), [], True
    indices = list(range(len(items)))
    counts = Counter(labels)
    held = max(1, round(len(items) * fraction))
    can_stratify = min(counts.values()) >= 2 and held >= len(counts) and len(items) - held >= len(counts)
    rest, out = train_test_split(
        indices, test_size=held, random_state=seed, stratify=list(labels) if can_stratify else None
    )
    return [items[i] for i in sorted(rest)], [items[i] for i in sorted(out)], can_stratify
