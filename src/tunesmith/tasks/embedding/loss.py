"""What an embedding loss is given and gives back, and the registry of losses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn import functional as F

from tunesmith.plugin import Section
from tunesmith.registry import Registry


@dataclass
class Embedded:
    """One batch's vectors, as pooled (not yet unit length): row i of `anchors` goes with row i of `positives`
    (and of `negatives`, a harder candidate for it, when the data has one) and with `scores[i]`, a similarity
    label, for the losses that regress on one."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor | None = None
    scores: torch.Tensor | None = None

    def truncated(self, dims: int) -> Embedded:
        """The first `dims` dimensions of every vector (Matryoshka: the prefix must embed on its own)."""
        cut = None if self.negatives is None else self.negatives[:, :dims]
        return Embedded(self.anchors[:, :dims], self.positives[:, :dims], cut, self.scores)


class EmbeddingLoss:
    """One objective over a batch's vectors; `scored`: it learns from each pair's similarity label (a score
    column) instead of ranking the batch's positives. Its Params are its own keys (task.loss_params)."""

    name: ClassVar[str]
    scored: ClassVar[bool] = False

    class Params(Section):
        pass

    def __init__(self, params: Section | None = None):
        self.params = params if params is not None else self.Params()

    def __call__(self, batch: Embedded) -> torch.Tensor:
        """The batch's mean loss (a scalar)."""
        raise NotImplementedError


LOSSES: Registry[type[EmbeddingLoss]] = Registry("embedding loss")


def wide(x: torch.Tensor) -> torch.Tensor:
    """`x` in at least float32 (vectors from a bf16 or fp16 forward), float64 kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def cosine_matrix(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of `rows` with every row of `columns`, in at least float32."""
    return F.normalize(wide(rows), dim=-1) @ F.normalize(wide(columns), dim=-1).T


def matryoshka(loss: EmbeddingLoss, batch: Embedded, dims: list[int]) -> torch.Tensor:
    """Matryoshka representation learning (Kusupati et al., 2022; sentence-transformers' MatryoshkaLoss):
    `loss` on the full vectors plus on each prefix of `dims` dimensions, weighted alike, so a vector cut to
    its first d dimensions still embeds (smaller indexes, faster search). No `dims`: the loss alone."""
    total = loss(batch)
    for d in dims:
        if d < batch.anchors.shape[-1]:
            total = total + loss(batch.truncated(d))
    return total
