"""Multiple negatives ranking loss (Henderson et al., 2017; sentence-transformers' MultipleNegativesRankingLoss,
the InfoNCE of SimCSE and most retrieval models): each anchor must pick its own positive out of every
positive in the batch (and every hard negative, when the data has them), by cross-entropy over its
cosine similarities times `scale`. The other examples' positives are its negatives for free, so bigger
batches give more and harder negatives; the batches never hold the same text twice (data/batch_order.py)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch.nn import functional as F

from tunesmith.tasks.embedding.loss import LOSSES, Embedded, EmbeddingLoss, cosine_matrix


@LOSSES.register("mnrl")
class MultipleNegativesRanking(EmbeddingLoss):
    name = "mnrl"

    class Params(EmbeddingLoss.Params):
        scale: float = Field(20.0, gt=0)
        """Cosine similarities are multiplied by this before the softmax (1 / temperature). 20: the
        sentence-transformers default (temperature 0.05), which its models were trained with."""

    def __call__(self, batch: Embedded) -> torch.Tensor:
        candidates = batch.positives
        if batch.negatives is not None:
            candidates = torch.cat([batch.positives, batch.negatives])
        logits = cosine_matrix(batch.anchors, candidates) * self.params.scale
        targets = torch.arange(batch.anchors.shape[0], device=logits.device)
        return F.cross_entropy(logits, targets)
