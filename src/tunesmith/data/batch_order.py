"""Which examples go together in a batch. Padding happens per batch, in the task's collate."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence

import torch


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch) so a resumed run sees the same order.

    With `group_by_length`, examples are shuffled, cut into mega-batches of 50 batches, sorted by length
    inside each, then cut into batches whose order is shuffled again: batches hold similar lengths (little
    padding) while every epoch still sees a fresh random order.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if group_by_length:
        mega = batch_size * 50
        order = [
            i
            for start in range(0, len(order), mega)
            for i in sorted(order[start : start + mega], key=lambda j: -lengths[j])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in shuffled]
    return batches


def no_duplicate_batches(
    keys: Sequence[Sequence[Hashable]], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """The batches of one epoch in a random order (a pure function of seed and epoch) where no batch holds two
    examples that share a key (a text): with in-batch negatives, a text twice in a batch would be scored as
    its own negative. `keys[i]`: example i's texts.

    Batches fill in a shuffled order; an example that clashes with the batch being filled waits for the next
    one, and examples still waiting at the end join any batch with room and no clash. The epoch keeps
    ceil(n / batch_size) batches (what the learning-rate schedule counts); an example that fits none of them
    (the same text in more examples than there are batches) sits this epoch out: the data check reports
    such texts ("the same positive for many anchors")."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    waiting = deque(torch.randperm(len(keys), generator=generator).tolist())
    count = -(-len(keys) // batch_size)
    batches: list[list[int]] = []
    taken: list[set[Hashable]] = []
    while waiting and len(batches) < count:
        batch, seen, clashed = [], set(), deque()
        while waiting and len(batch) < batch_size:
            i = waiting.popleft()
            if seen.isdisjoint(keys[i]):
                batch.append(i)
                seen.update(keys[i])
            else:
                clashed.append(i)
        waiting.extendleft(reversed(clashed))
        batches.append(batch)
        taken.append(seen)
    for i in waiting:
        for batch, seen in zip(batches, taken, strict=True):
            if len(batch) < batch_size and seen.isdisjoint(keys[i]):
                batch.append(i)
                seen.update(keys[i])
                break
    return batches
