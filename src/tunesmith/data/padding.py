"""Token-id rows to one padded tensor: the one padding routine every batch builder uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad(
    rows: Sequence[Sequence[int]], value: int, *, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` as a (len(rows), longest) long tensor filled out with `value` on the right (or on the left, as
    decoder-only generation wants), and the attention mask: 1 on the rows' own tokens, 0 on padding."""
    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        out[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return out, mask
