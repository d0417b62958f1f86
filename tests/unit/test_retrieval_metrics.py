"""Retrieval metrics on a ranking worked out by hand, and on real text equal to sentence-transformers' own
InformationRetrievalEvaluator with the same packaged model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tunesmith.evaluation.retrieval import query_scores
from tunesmith.evaluation.vector_search import top_documents

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_of_a_ranking_worked_out_by_hand() -> None:
    # query 0: relevant {2, 5}; ranked 7, 2, 9, 5, ... -> hits at ranks 2 and 4
    # query 1: relevant {3}; ranked 3 first
    # query 2: relevant {8}; not in its top 4
    ranked = [[7, 2, 9, 5], [3, 1, 0, 2], [0, 1, 2, 4]]
    relevant = [{2, 5}, {3}, {8}]
    scores = query_scores(ranked, relevant, ["mrr@10", "ndcg@10", "map@100", "recall@1", "recall@10"])
    ideal = 1 + 1 / math.log2(3)
    assert scores["mrr@10"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert scores["ndcg@10"] == pytest.approx([(1 / math.log2(3) + 1 / math.log2(5)) / ideal, 1.0, 0.0])
    assert scores["map@100"] == pytest.approx([(1 / 2 + 2 / 4) / 2, 1.0, 0.0])
    assert scores["recall@1"] == pytest.approx([0.0, 1.0, 0.0])
    assert scores["recall@10"] == pytest.approx([1.0, 1.0, 0.0])


def test_top_documents_ranks_by_dot_product_and_breaks_ties_by_index() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    corpus = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    scores, indices = top_documents(queries, corpus, 3)
    assert indices.tolist() == [[1, 0, 2], [3, 0, 2]]
    assert scores.tolist() == [[1.0, 0.5, 0.5], [1.0, 0.5, 0.5]]
    # the 2nd place is shared by documents 0 and 2: the lower index is in the top 2, whatever topk picked
    assert top_documents(queries, corpus, 2)[1].tolist() == [[1, 0], [3, 0]]
    assert top_documents(queries, corpus, 10)[1].shape == (2, 4)  # k past the corpus: the whole corpus


def test_exact_search_equals_a_stable_full_sort_with_many_ties() -> None:
    """Duplicate documents (equal vectors) everywhere: topk plus the tie fix-up ranks as a stable sort."""
    generator = torch.Generator().manual_seed(0)
    distinct = torch.nn.functional.normalize(torch.randn(40, 8, generator=generator), dim=-1)
    corpus = distinct[torch.randint(40, (3000,), generator=generator)]
    queries = torch.nn.functional.normalize(torch.randn(300, 8, generator=generator), dim=-1)
    expected = torch.sort(-(queries @ corpus.T), dim=1, stable=True).indices[:, :25]
    assert torch.equal(top_documents(queries, corpus, 25)[1], expected)


def test_a_corpus_above_the_limit_is_searched_by_a_faiss_index_filled_in_chunks(monkeypatch) -> None:
    """Clustered vectors, an IVF-SQ8 index trained on a sample and filled chunk by chunk (each document
    embedded once): nearly every exact top-10 document is found, with its own corpus index."""
    pytest.importorskip("faiss")
    from tunesmith.evaluation import vector_search

    monkeypatch.setattr(vector_search, "TRAIN_PER_LIST", 8)  # trained on 2,016 documents, the rest added
    monkeypatch.setattr(vector_search, "ADD_CHUNK", 700)  # in 3 chunks
    generator = torch.Generator().manual_seed(1)
    centers = torch.nn.functional.normalize(torch.randn(60, 32, generator=generator), dim=-1)
    noise = torch.randn(4000, 32, generator=generator)
    vectors = torch.nn.functional.normalize(centers[torch.arange(4000) % 60] + 0.4 * noise, dim=-1)
    embedded: list[int] = []

    calls = []

    def embed(picked):
        embedded.extend(picked)
        calls.append(len(picked))
        return vectors[list(picked)]

    index = vector_search.build_index(len(vectors), embed, limit=1000)
    assert index.approximate and "IVF252,SQ8" in index.description
    assert sorted(embedded) == list(range(4000)) and calls == [2016, 700, 700, 584]  # each one once
    queries = vectors[:200] + 0.05 * torch.randn(200, 32, generator=generator)
    queries = torch.nn.functional.normalize(queries, dim=-1)
    scores, found = index.search(queries, 10)
    exact = top_documents(queries, vectors, 10)[1]
    recall = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), exact.tolist(), strict=True)) / 2000
    assert recall > 0.9
    best = found[:, 0]
    assert torch.allclose(scores[:, 0], (queries * vectors[best]).sum(-1), atol=0.05)  # 8-bit vectors
    assert vector_search.build_index(len(vectors), embed, limit=None).vectors is not None


def test_without_faiss_a_corpus_above_the_limit_is_refused_with_the_fix(monkeypatch) -> None:
    import sys

    from tunesmith.errors import ConfigError
    from tunesmith.evaluation.vector_search import search_kind

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    assert search_kind(1000, 1000) == "exact"
    with pytest.raises(ConfigError, match=r"1,001 documents.*pip install 'tunesmith\[index\]'"):
        search_kind(1001, 1000)


def test_metrics_equal_sentence_transformers_evaluator_on_real_text(minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from tests.unit.embedding_support import embedding_task, pairs_of

    # real pairs: a package's one-line synopsis is the query, its description the document
    rows = [json.loads(line) for line in (ROOT / "data/debian-summaries/test.jsonl").open()]
    pairs = pairs_of([(r["summary"], r["document"]) for r in rows])
    task, model = embedding_task()
    ours = task.evaluate(model, task.encode(pairs, task.tokenizer), 16, task.tokenizer.pad_token_id)

    st = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)
    evaluator = InformationRetrievalEvaluator(
        queries={str(i): p.anchor for i, p in enumerate(pairs)},
        corpus={str(i): p.positive for i, p in enumerate(pairs)},
        relevant_docs={str(i): {str(i)} for i in range(len(pairs))},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        map_at_k=[100],
        precision_recall_at_k=[1, 10, 100],
        accuracy_at_k=[1],
    )
    theirs = evaluator(st)
    for name, key in [
        ("ndcg@10", "ndcg@10"),
        ("mrr@10", "mrr@10"),
        ("map@100", "map@100"),
        ("recall@1", "recall@1"),
        ("recall@10", "recall@10"),
    ]:
        assert ours.metrics[name] == pytest.approx(theirs[f"cosine_{key}"], abs=1e-6), name
