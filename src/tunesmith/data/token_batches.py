"""Which examples share a batch when batches are capped in padded tokens as well as in examples: inference
batches, and the passes a long training batch is split into."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def token_capped_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None
) -> Iterator[list[int]]:
    """Indices of `lengths` in batches of similar length, longest first (so memory peaks at once). A batch
    holds at most `batch_size` examples and, padded to its longest, at most `max_tokens` tokens (a single
    example longer than that still gets a batch of its own); `max_tokens` None caps examples only."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        size = batch_size
        if max_tokens is not None:  # the batch's longest is its first: padded size = size * that length
            size = max(1, min(batch_size, max_tokens // max(1, lengths[order[start]])))
        yield order[start : start + size]
        start += size
