"""Retrieval metrics on a ranking worked out by hand, and on real text equal to sentence-transformers' own
InformationRetrievalEvaluator with the same packaged model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tunesmith.evaluation.retrieval import query_scores, top_documents

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
    assert top_documents(queries, corpus, 3, block=1).tolist() == [[1, 0, 2], [3, 0, 2]]
    assert top_documents(queries, corpus, 10).shape == (2, 4)  # k past the corpus: the whole corpus


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
