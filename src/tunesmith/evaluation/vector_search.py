"""Nearest documents by dot product (unit vectors: the cosine): exact up to a size, a faiss index above it.

Exact search scores every query against every document, a block of queries at a time (the block shrinks as
the corpus grows, so a block's scores stay within BLOCK_SCORES floats), and keeps each query's top k with
torch.topk, ties to the lower corpus index (as sentence-transformers' evaluator breaks them). Measured by
bench/vector_search.py on 2 CPU cores (384-dimensional vectors, 500 queries, top 100): 25k documents
0.12 s, 250k 0.9 s, 1M 4.2 s (8 ms a query a million documents; a full sort instead of topk, 6x slower).
Building an approximate index of 1M documents costs as much as thousands of exact queries (IVF-SQ8 30 s,
HNSW 169 s), more than a test set holds, and its results are not exact, so exact search is used as long as
the corpus vectors fit in memory: documents x dimensions x 4 bytes (1M x 384: 1.5 GB).

Above `limit` documents (task.exact_search_max_documents), the vectors go into a faiss IVF index with 8-bit
scalar-quantized vectors (1 byte a dimension: a quarter of the memory), `IVF{4 sqrt(N)},SQ8`, trained on a
random sample of TRAIN_PER_LIST vectors a list and searched with NPROBE lists: on 1M clustered
384-dimensional vectors, 30 s to train and fill, 0.7 ms a query, 97.5% of the exact top 10 found. The corpus
is embedded in chunks and added as it goes, so its float vectors never sit in memory whole. faiss is the
`index` extra (`pip install 'tunesmith[index]'`); without it, a corpus above the limit is refused before
anything is embedded, with that fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from tunesmith.errors import ConfigError

BLOCK_SCORES = 1 << 26
"""Query x document scores held at once by exact search (64M floats: 256 MB)."""
MAX_BLOCK = 256
"""Queries scored at once at most."""
TRAIN_PER_LIST = 40
"""Vectors sampled per IVF list to train the index (faiss warns under 39)."""
NPROBE = 64
"""IVF lists searched per query."""
ADD_CHUNK = 50_000
"""Documents embedded and added to an approximate index at a time."""

Embed = Callable[[Sequence[int]], torch.Tensor]
"""Unit vectors of the corpus documents with these indices, in that order."""


def top_documents(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact search: each query's `k` most similar corpus rows (dot product), best first, ties to the lower
    index, as (scores, indices), queries x k."""
    k = min(k, corpus.shape[0])
    block = max(1, min(MAX_BLOCK, BLOCK_SCORES // max(1, corpus.shape[0])))
    scores = torch.empty((queries.shape[0], k), dtype=corpus.dtype)
    indices = torch.empty((queries.shape[0], k), dtype=torch.long)
    for start in range(0, queries.shape[0], block):
        found = _top_block(queries[start : start + block] @ corpus.T, k)
        scores[start : start + block], indices[start : start + block] = (t.cpu() for t in found)
    return scores, indices


def _top_block(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    values, indices = torch.topk(scores, k, dim=1)
    # topk orders equal scores arbitrarily: order them by index; where the k-th score is shared by a document
    # outside the top k (rare: duplicate documents), a stable full sort of that row decides which one is in
    by_index = torch.sort(indices, dim=1).indices
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_score = torch.sort(-values, dim=1, stable=True).indices
    values, indices = values.gather(1, by_score), indices.gather(1, by_score)
    straddling = (scores >= values[:, -1:]).sum(dim=1) > k
    for row in straddling.nonzero().flatten().tolist():
        order = torch.sort(-scores[row], stable=True).indices[:k]
        values[row], indices[row] = scores[row, order], order
    return values, indices


class CorpusIndex:
    """A corpus's vectors, searchable: exact (the vectors themselves) or a faiss index."""

    def __init__(self, vectors: torch.Tensor | None, index: Any = None, description: str = "exact"):
        self.vectors = vectors
        self.index = index
        self.description = description

    @property
    def approximate(self) -> bool:
        return self.index is not None

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's k best documents as (scores, indices), best first."""
        if self.vectors is not None:
            return top_documents(queries, self.vectors, k)
        scores, indices = self.index.search(np.ascontiguousarray(queries.float().numpy()), k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()


def search_kind(documents: int, limit: int | None) -> str:
    """How a corpus of `documents` is searched: `exact`, or the approximate index's description. Refuses an
    approximate search when faiss is missing (before any document is embedded)."""
    if limit is None or documents <= limit:
        return "exact"
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"the corpus has {documents:,} documents, above task.exact_search_max_documents={limit:,}, and "
            "searching it approximately needs faiss: pip install 'tunesmith[index]' (or raise "
            "task.exact_search_max_documents if its vectors fit in memory)"
        ) from None
    return f"approximate: faiss IVF{_lists(documents)},SQ8, {NPROBE} lists searched a query"


def build_index(documents: int, embed: Embed, limit: int | None, seed: int = 0) -> CorpusIndex:
    """Embed a corpus of `documents` and index it: exact up to `limit` documents, else faiss IVF-SQ8."""
    kind = search_kind(documents, limit)
    if kind == "exact":
        return CorpusIndex(embed(range(documents)))
    import faiss

    lists = _lists(documents)
    order = np.random.default_rng(seed).permutation(documents)
    sample = order[: min(documents, TRAIN_PER_LIST * lists)]
    vectors = embed(sample.tolist()).float().numpy()
    index = faiss.index_factory(vectors.shape[1], f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add_with_ids(vectors, sample.astype(np.int64))
    rest = np.sort(order[len(sample) :])
    for start in range(0, len(rest), ADD_CHUNK):
        chunk = rest[start : start + ADD_CHUNK]
        index.add_with_ids(embed(chunk.tolist()).float().numpy(), chunk.astype(np.int64))
    faiss.extract_index_ivf(index).nprobe = NPROBE
    return CorpusIndex(None, index, kind)


def _lists(documents: int) -> int:
    """IVF lists for a corpus: 4 sqrt(N), faiss's guideline for up to a few million vectors."""
    return max(1, int(4 * math.sqrt(documents)))
