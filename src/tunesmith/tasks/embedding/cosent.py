"""CoSENT (Su, 2022; sentence-transformers' CoSENTLoss): for pairs labelled with a similarity score, every two
pairs whose scores are ordered should have their cosines ordered the same way:
log(1 + sum over (i, j) with score_i > score_j of exp(scale * (cos_j - cos_i))). Only the order of the
scores matters, so any scale of labels works (0-1, 0-5, a vote count); sentence-transformers documents it
as training better than regressing the cosine on the score (cosine.py)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch.nn import functional as F

from tunesmith.tasks.embedding.loss import LOSSES, Embedded, EmbeddingLoss, wide


@LOSSES.register("cosent")
class CoSENT(EmbeddingLoss):
    name = "cosent"
    scored = True

    class Params(EmbeddingLoss.Params):
        scale: float = Field(20.0, gt=0)
        """Multiplies the cosine differences (1 / temperature); 20, the paper's and sentence-transformers'."""

    def __call__(self, batch: Embedded) -> torch.Tensor:
        cosines = F.cosine_similarity(wide(batch.anchors), wide(batch.positives), dim=-1)
        scores = batch.scores
        differences = (cosines[None, :] - cosines[:, None]) * self.params.scale  # [i, j] = cos_j - cos_i
        ordered = scores[:, None] > scores[None, :]  # pairs (i, j) whose score says i above j
        terms = differences[ordered]
        zero = torch.zeros(1, device=terms.device, dtype=terms.dtype)  # the 1 inside the log
        return torch.logsumexp(torch.cat([zero, terms]), dim=0)
