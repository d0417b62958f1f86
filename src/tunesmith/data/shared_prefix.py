"""Answers to one prompt packed as one segment, the prompt once: preference pairs without padding and without
running the prompt twice.

A preference pair is two rows that start alike (the rendered prompt and the assistant header, often a few
answer tokens too) and end differently. Run as two padded rows, the shared start is computed twice and the
shorter row carries padding. Here each example becomes one segment: its rows' longest common prefix once,
then each row's own tail, the tails numbered from where the prefix ends (position ids), and an attention mask
that lets a tail token see the prefix and the earlier tokens of its own tail, never another tail. Under that
mask every token's hidden state is the one it has in its own row alone (causal attention), so the scores are
those of the padded rows, from fewer tokens. Segments are packed several to a row (first fit, longest first),
each blocked off from the others, as chat's packing does (data/packing.py).

Labels follow the tokens they were given as (HF style: a row's label at t is its token at t, IGNORE where no
loss): each supervised token becomes a target, predicted by the position that held its row's previous token,
and is summed into its row's score. Score rows are numbered as the padded batch numbers them: every example's
first row, then every example's second row.

A custom 4D mask needs attention that takes one (eager or SDPA); a varlen kernel (FlashAttention) cannot
express the tails' mask, and such a model gets padded rows instead: `shared_prefix_supported`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tunesmith.data.chat_encoding import IGNORE
from tunesmith.data.packing import attention_implementation, packing_supported, rows_first_fit

Row = tuple[Sequence[int], Sequence[int]]
"""One row as encoded: (input ids, labels)."""


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest start every row shares."""
    shortest = min(len(r) for r in rows)
    for i in range(shortest):
        token = rows[0][i]
        if any(r[i] != token for r in rows[1:]):
            return i
    return shortest


@dataclass
class Segment:
    """One example laid out: its tokens, their positions and branches (0: the shared prefix; b + 1: row b's
    tail), and its targets as (index in the segment of the predicting position, target token, row)."""

    ids: list[int]
    positions: list[int]
    branches: list[int]
    targets: list[tuple[int, int, int]]


def lay_out(rows: Sequence[Row]) -> Segment:
    """One example's rows (each (input ids, labels)) as one segment: their common prefix, then each tail."""
    shared = common_prefix([ids for ids, _ in rows])
    ids, positions, branches = list(rows[0][0][:shared]), list(range(shared)), [0] * shared
    targets = []
    for b, (row_ids, labels) in enumerate(rows):
        start = len(ids)  # where this row's tail begins in the segment
        ids += row_ids[shared:]
        positions += range(shared, len(row_ids))
        branches += [b + 1] * (len(row_ids) - shared)
        for t in range(1, len(row_ids)):
            if labels[t] != IGNORE:
                before = t - 1  # the position that predicts token t
                targets.append((before if before < shared else start + before - shared, labels[t], b))
    return Segment(ids, positions, branches, targets)


def collate_shared(examples: Sequence[Sequence[Row]], capacity: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Examples (each a list of rows with the same number of rows, or one row each) as packed rows:
    input_ids, position_ids, `allowed` (row, query, key: may the query attend to the key) and the targets:
    `target_index` (flat index into the rows' positions), `target_ids` and `target_row` (the score row, every
    example's first row first), with `score_rows` (how many)."""
    segments = [lay_out(rows) for rows in examples]
    packed = rows_first_fit([len(s.ids) for s in segments], capacity)
    width = max(sum(len(segments[i].ids) for i in row) for row in packed)
    ids = torch.full((len(packed), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(packed), width), dtype=torch.long)
    allowed = torch.zeros((len(packed), width, width), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    index, target_ids, target_row = [], [], []
    n = len(examples)
    for r, row in enumerate(packed):
        at = 0
        for i in row:
            s = segments[i]
            k = len(s.ids)
            ids[r, at : at + k], positions[r, at : at + k] = torch.tensor(s.ids), torch.tensor(s.positions)
            branch = torch.tensor(s.branches)
            visible = (branch.unsqueeze(0) == 0) | (branch.unsqueeze(0) == branch.unsqueeze(1))
            allowed[r, at : at + k, at : at + k] = visible & causal[:k, :k]
            for source, token, b in s.targets:
                index.append(r * width + at + source)
                target_ids.append(token)
                target_row.append(b * n + i)
            at += k
        positions[r, at:] = torch.arange(width - at)  # the tail's padding: a block of its own
        allowed[r, at:, at:] = causal[: width - at, : width - at]
    return {
        "input_ids": ids,
        "position_ids": positions,
        "allowed": allowed,
        "target_index": torch.tensor(index, dtype=torch.long),
        "target_ids": torch.tensor(target_ids, dtype=torch.long),
        "target_row": torch.tensor(target_row, dtype=torch.long),
        "score_rows": torch.tensor(n * max(len(rows) for rows in examples)),
    }


def attention_mask(allowed: torch.Tensor, implementation: str) -> torch.Tensor:
    """The (rows, 1, query, key) mask the model's attention takes as it is: SDPA a boolean one (True: attend),
    eager one it adds to its scores (0 where allowed, float32's lowest value elsewhere; added to bf16 scores
    it promotes them, and the softmax runs in float32 either way)."""
    if implementation == "sdpa":
        return allowed.unsqueeze(1)
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(torch.float32).min).unsqueeze(1)


def shared_prefix_supported(model: torch.nn.Module) -> bool:
    """True where packing works (data/packing.py) and the attention takes a custom 4D mask (eager, SDPA)."""
    return packing_supported(model) and attention_implementation(model) in ("eager", "sdpa")
