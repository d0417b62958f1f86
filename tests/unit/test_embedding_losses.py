"""Each embedding loss against its formula, computed here by hand with `math` on small vectors, and against
sentence-transformers' own implementation on the same vectors; Matryoshka's sum of prefixes."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from tunesmith.tasks.embedding import LOSSES, Embedded, matryoshka

ANCHORS = [[1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 0.0]]
POSITIVES = [[2.0, 0.5, 1.0], [0.5, 1.0, 1.0], [1.0, 2.0, -1.0]]
NEGATIVES = [[-1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
SCORES = [0.9, 0.2, 0.5]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def loss_of(name: str, batch: Embedded, **params) -> float:
    cls = LOSSES.get(name)
    return float(cls(cls.Params(**params))(batch))


@pytest.mark.parametrize("with_negatives", [False, True])
def test_mnrl_is_cross_entropy_of_scaled_cosines_over_every_candidate(with_negatives: bool) -> None:
    candidates = POSITIVES + (NEGATIVES if with_negatives else [])
    expected = 0.0
    for i, anchor in enumerate(ANCHORS):
        logits = [20.0 * cos(anchor, c) for c in candidates]
        expected += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    batch = Embedded(t(ANCHORS), t(POSITIVES), t(NEGATIVES) if with_negatives else None)
    assert loss_of("mnrl", batch) == pytest.approx(expected / len(ANCHORS), rel=1e-12)


def test_mnrl_scale_is_its_temperature() -> None:
    batch = Embedded(t(ANCHORS), t(POSITIVES))
    expected = sum(
        -(5.0 * cos(a, POSITIVES[i]) - math.log(sum(math.exp(5.0 * cos(a, p)) for p in POSITIVES)))
        for i, a in enumerate(ANCHORS)
    ) / len(ANCHORS)
    assert loss_of("mnrl", batch, scale=5.0) == pytest.approx(expected, rel=1e-12)


def test_cosent_sums_over_the_pairs_whose_scores_are_ordered() -> None:
    cosines = [cos(a, p) for a, p in zip(ANCHORS, POSITIVES, strict=True)]
    terms = [
        math.exp(20.0 * (cosines[j] - cosines[i]))
        for i in range(3)
        for j in range(3)
        if SCORES[i] > SCORES[j]
    ]
    batch = Embedded(t(ANCHORS), t(POSITIVES), scores=t(SCORES))
    assert loss_of("cosent", batch) == pytest.approx(math.log(1 + sum(terms)), rel=1e-12)


def test_cosine_loss_is_the_mean_squared_error_of_cosine_and_score() -> None:
    expected = sum((cos(a, p) - s) ** 2 for a, p, s in zip(ANCHORS, POSITIVES, SCORES, strict=True)) / 3
    batch = Embedded(t(ANCHORS), t(POSITIVES), scores=t(SCORES))
    assert loss_of("cosine", batch) == pytest.approx(expected, rel=1e-12)


def test_matryoshka_adds_the_loss_of_each_shorter_prefix() -> None:
    batch = Embedded(t(ANCHORS), t(POSITIVES), t(NEGATIVES))
    loss = LOSSES.get("mnrl")()
    full, two = float(loss(batch)), float(loss(batch.truncated(2)))
    # dims at or past the full width add nothing more than the full vector already counts
    assert float(matryoshka(loss, batch, [2, 3, 8])) == pytest.approx(full + two, rel=1e-12)
    assert float(matryoshka(loss, batch, [])) == pytest.approx(full, rel=1e-12)


def test_the_losses_equal_sentence_transformers_own_on_the_same_vectors(minilm_dir) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        CoSENTLoss,
        CosineSimilarityLoss,
        MultipleNegativesRankingLoss,
    )

    model = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)
    a, p, n, s = t(ANCHORS).float(), t(POSITIVES).float(), t(NEGATIVES).float(), t(SCORES).float()
    theirs = MultipleNegativesRankingLoss(model).compute_loss_from_embeddings([a, p, n], None)
    assert loss_of("mnrl", Embedded(a, p, n)) == pytest.approx(float(theirs), rel=1e-5)
    theirs = CoSENTLoss(model).compute_loss_from_embeddings([a, p], s)
    assert loss_of("cosent", Embedded(a, p, scores=s)) == pytest.approx(float(theirs), rel=1e-5)
    theirs = CosineSimilarityLoss(model).compute_loss_from_embeddings([a, p], s)
    assert loss_of("cosine", Embedded(a, p, scores=s)) == pytest.approx(float(theirs), rel=1e-5)


def test_unknown_loss_and_loss_keys_are_refused_with_the_choices() -> None:
    from tunesmith.errors import ConfigError
    from tunesmith.tasks.embedding.task import EmbeddingParams

    with pytest.raises((ConfigError, ValidationError), match="mnrl"):
        EmbeddingParams(loss="triplet")
    with pytest.raises(ValidationError, match="temperature"):
        EmbeddingParams(loss="mnrl", loss_params={"temperature": 0.05})
    with pytest.raises(ValidationError, match="matryoshka_dims"):
        EmbeddingParams(matryoshka_dims=[128, 0])
