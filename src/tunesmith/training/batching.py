"""Which examples go together in a batch. Padding happens per batch, in the task's collate."""

from __future__ import annotations

from collections.abc import Sequence

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
