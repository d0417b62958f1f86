"""Retrieval metrics: for each query, rank a corpus by similarity and score the ranks of its relevant documents.

The definitions are sentence-transformers' InformationRetrievalEvaluator's (binary relevance; ties broken by
the lower corpus index), so numbers compare with what its users report:
- MRR@k: 1 / the rank of the first relevant document in the top k (0 if none is there);
- NDCG@k: the DCG of the top k (a relevant document at rank r adds 1 / log2(r + 1)) over the DCG of a perfect
  ranking of the query's relevant documents;
- MAP@k: the precision at each relevant document found in the top k, summed, over min(k, relevant documents);
- Recall@k: the share of the query's relevant documents in the top k.
Every metric is a mean of per-query scores, so the paired bootstrap resamples queries
(evaluation/bootstrap.py: mean_resampler).

The search itself (exact, or approximate above a corpus size) is evaluation/vector_search.py's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tunesmith.evaluation.vector_search import CorpusIndex

METRICS: dict[str, tuple[str, int]] = {
    "mrr@10": ("mrr", 10),
    "ndcg@10": ("ndcg", 10),
    "map@100": ("map", 100),
    "recall@1": ("recall", 1),
    "recall@10": ("recall", 10),
    "recall@100": ("recall", 100),
}
"""The metrics an embedding run reports, by name: (kind, cut-off)."""


def query_scores(
    ranked: torch.Tensor | np.ndarray, relevant: Sequence[set[int]], metrics: Sequence[str] = tuple(METRICS)
) -> dict[str, list[float]]:
    """Per-query `metrics` (names of METRICS) from each query's ranked corpus indices and its relevant ones."""
    rows = np.asarray(ranked)
    out: dict[str, list[float]] = {name: [] for name in metrics}
    for top, wanted in zip(rows, relevant, strict=True):
        hits = np.fromiter((int(i) in wanted for i in top), dtype=bool, count=len(top))
        for name in metrics:
            kind, k = METRICS[name]
            out[name].append(_score(kind, hits[:k], len(wanted), k))
    return out


def _score(kind: str, hits: np.ndarray, relevant: int, k: int) -> float:
    if relevant == 0:
        return 0.0
    ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the relevant documents found
    if kind == "mrr":
        return 1.0 / ranks[0] if ranks.size else 0.0
    if kind == "recall":
        return ranks.size / relevant
    if kind == "map":
        return float((np.arange(1, ranks.size + 1) / ranks).sum() / min(k, relevant))
    ideal = (1.0 / np.log2(np.arange(2, min(relevant, k) + 2))).sum()
    return float((1.0 / np.log2(ranks + 1)).sum() / ideal)


def retrieval_scores(
    queries: torch.Tensor, corpus: CorpusIndex, relevant: Sequence[set[int]]
) -> dict[str, list[float]]:
    """Every metric of METRICS per query, searching `corpus` with `queries` (unit rows)."""
    deepest = max(k for _, k in METRICS.values())
    return query_scores(corpus.search(queries, deepest)[1], relevant)
