"""Cosine similarity regression (sentence-transformers' CosineSimilarityLoss): the squared difference between
each pair's cosine and its score, which must lie in [-1, 1] (commonly 0 to 1). Kept for users whose scores
are calibrated similarities; cosent.py learns the order of the scores and needs no such scale."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tunesmith.tasks.embedding.loss import LOSSES, Embedded, EmbeddingLoss, wide


@LOSSES.register("cosine")
class CosineSimilarity(EmbeddingLoss):
    name = "cosine"
    scored = True

    def __call__(self, batch: Embedded) -> torch.Tensor:
        cosines = F.cosine_similarity(wide(batch.anchors), wide(batch.positives), dim=-1)
        return F.mse_loss(cosines, batch.scores.to(cosines.dtype))
