"""Corpus search on a CPU: exact (torch topk, what tunesmith uses up to task.exact_search_max_documents) vs a
full sort, faiss's exact flat index, HNSW and IVF-SQ8 (what tunesmith uses above the limit).

Vectors: synthetic, unit length, 384 dimensions (all-MiniLM-L6-v2's width), clustered (documents drawn
around N/50 centres, queries near documents) as real embeddings are; embedding a million real documents
would take hours on 2 cores, and search time does not depend on where the vectors came from. Recall: the
share of the exact top k an index returns.

    python bench/vector_search.py [--sizes 25000 250000 1000000] [--queries 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from tunesmith.evaluation.vector_search import NPROBE, TRAIN_PER_LIST, top_documents

DIMS = 384
K = 100


def unit(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, DIMS, generator=generator), dim=-1)


def clustered(n: int, queries: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = unit(max(n // 50, 10), g)
    corpus = torch.nn.functional.normalize(
        centres[torch.randint(len(centres), (n,), generator=g)] + 0.6 * unit(n, g), dim=-1
    )
    near = corpus[torch.randint(n, (queries,), generator=g)] + 0.5 * unit(queries, g)
    return corpus, torch.nn.functional.normalize(near, dim=-1)


def recall(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found, exact, strict=True)]))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(n: int, queries: int) -> dict:
    import faiss

    corpus, q = clustered(n, queries, seed=0)
    (_, exact), t_exact = timed(lambda: top_documents(q, corpus, K))
    exact = exact.numpy()
    sample = q[: min(queries, 64)]
    _, t_sort = timed(lambda: torch.sort(-(sample @ corpus.T), dim=1, stable=True))
    row = {
        "documents": n,
        "queries": queries,
        "exact_topk_s": t_exact,
        "full_sort_s": t_sort * queries / len(sample),
    }
    x, qx = corpus.numpy(), q.numpy()
    flat = faiss.IndexFlatIP(DIMS)
    (_, t_flat) = timed(lambda: (flat.add(x), flat.search(qx, K)))
    row["faiss_flat_s"] = t_flat
    hnsw = faiss.IndexHNSWFlat(DIMS, 32, faiss.METRIC_INNER_PRODUCT)
    _, row["hnsw_build_s"] = timed(lambda: hnsw.add(x))
    hnsw.hnsw.efSearch = 256
    (_, got), row["hnsw_search_s"] = timed(lambda: hnsw.search(qx, K))
    row["hnsw_recall@10"] = recall(got, exact, 10)
    lists = max(1, int(4 * math.sqrt(n)))
    ivf = faiss.index_factory(DIMS, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    train = x[np.random.default_rng(0).permutation(n)[: TRAIN_PER_LIST * lists]]
    _, row["ivf_sq8_build_s"] = timed(lambda: (ivf.train(train), ivf.add(x)))
    faiss.extract_index_ivf(ivf).nprobe = NPROBE
    (_, got), row["ivf_sq8_search_s"] = timed(lambda: ivf.search(qx, K))
    row["ivf_sq8_recall@10"] = recall(got, exact, 10)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 250_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, {args.queries} queries, top {K}, {DIMS} dims")
    rows = []
    for n in args.sizes:
        row = measure(n, args.queries)
        rows.append(row)
        print(
            f"{n:>10,} docs  exact topk {row['exact_topk_s']:6.2f} s  full sort {row['full_sort_s']:6.2f} s  "
            f"faiss flat {row['faiss_flat_s']:6.2f} s  HNSW build {row['hnsw_build_s']:6.1f} s search "
            f"{row['hnsw_search_s']:5.2f} s recall@10 {row['hnsw_recall@10']:.3f}  IVF-SQ8 build "
            f"{row['ivf_sq8_build_s']:5.1f} s search {row['ivf_sq8_search_s']:5.2f} s recall@10 "
            f"{row['ivf_sq8_recall@10']:.3f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
