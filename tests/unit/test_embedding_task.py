"""The embedding task's parts: batches without a repeated text, gradient caching that changes memory and not
gradients, the pooling a model folder declares, and pair files whose every error names file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.embedding_support import embedding_task, pairs_of
from tunesmith.data.batch_order import no_duplicate_batches
from tunesmith.errors import DataError, UserError
from tunesmith.models.sentence_pooling import pool, read_pooling

ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=80),
    batch_size=st.integers(2, 9),
    seed=st.integers(0, 5),
)
def test_no_batch_holds_a_text_twice_and_every_example_fits_where_it_can(
    texts: list[tuple[int, int]], batch_size: int, seed: int
) -> None:
    keys = [[("a", a), ("p", p)] for a, p in texts]
    batches = no_duplicate_batches(keys, batch_size, seed, epoch=0)
    assert len(batches) <= -(-len(keys) // batch_size)  # what the schedule counted, never more
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))
    for batch in batches:
        assert 0 < len(batch) <= batch_size
        texts_in = [k for i in batch for k in keys[i]]
        assert len(texts_in) == len(set(texts_in))
    # an example left out clashes with every batch that has room
    for i in set(range(len(keys))) - set(seen):
        for batch in batches:
            if len(batch) < batch_size:
                assert any(set(keys[i]) & set(keys[j]) for j in batch)
    assert no_duplicate_batches(keys, batch_size, seed, epoch=0) == batches  # a pure function of seed, epoch


def test_without_repeated_texts_every_example_is_in_one_full_batch() -> None:
    keys = [[("a", i), ("p", i)] for i in range(50)]
    batches = no_duplicate_batches(keys, 8, seed=3, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert [len(b) for b in batches] == [8] * 6 + [2]
    assert batches != no_duplicate_batches(keys, 8, seed=3, epoch=2)  # every epoch shuffles anew


def _lora_grads(cached: bool) -> dict[str, torch.Tensor]:
    from peft import LoraConfig, get_peft_model

    task, model = embedding_task(cached=cached, mini_batch_tokens=300)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False))
    model.train()  # dropout on: the cached pass must replay the same masks
    lines = (ROOT / "data/debian-summaries/train.jsonl").read_text().splitlines()[:8]
    rows = [json.loads(line) for line in lines]
    pairs = pairs_of([(r["summary"], r["document"]) for r in rows])
    batch = task.collate(task.encode(pairs, task.tokenizer), task.tokenizer.pad_token_id)
    assert sum(k.startswith("ids_") for k in batch) >= 3  # 16 texts, several passes
    torch.manual_seed(1)
    loss, count = task.loss(model, batch)
    loss.backward()
    assert count == 8
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_cached_loss_gives_the_gradients_of_the_plain_one() -> None:
    plain, cached = _lora_grads(cached=False), _lora_grads(cached=True)
    assert plain.keys() == cached.keys() and plain
    for name in plain:
        assert torch.allclose(plain[name], cached[name], atol=1e-6, rtol=1e-4), name
    assert any(g.abs().sum() > 0 for g in plain.values())


def test_pooling_is_read_from_the_sentence_transformers_folder(minilm_dir: Path, tmp_path: Path) -> None:
    declared = read_pooling(minilm_dir)
    assert (declared.mode, declared.normalize) == ("mean", True)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert read_pooling(plain).mode == "mean" and not read_pooling(plain).normalize
    folder = tmp_path / "cls"
    shutil.copytree(minilm_dir / "1_Pooling", folder / "1_Pooling")
    modules = json.loads((minilm_dir / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:2]))
    config = json.loads((folder / "1_Pooling/config.json").read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling/config.json").write_text(json.dumps(config))
    assert (read_pooling(folder).mode, read_pooling(folder).normalize) == ("cls", False)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                *modules,
                {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
            ]
        )
    )
    with pytest.raises(UserError, match="Dense"):
        read_pooling(folder)


def test_pool_modes_read_only_the_kept_positions() -> None:
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [-1.0], [5.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(hidden, mask, "mean").flatten().tolist() == [2.0, 2.0]
    assert pool(hidden, mask, "max").flatten().tolist() == [3.0, 5.0]
    assert pool(hidden, mask, "cls").flatten().tolist() == [1.0, 2.0]
    assert pool(hidden, mask, "lasttoken").flatten().tolist() == [3.0, 5.0]


BAD_FILES = {
    "missing positive": (
        '{"anchor": "a", "positive": "b"}\n{"anchor": "c"}\n',
        2,
        'missing field "positive"',
    ),
    "empty anchor": ('{"anchor": "  ", "positive": "b"}\n', 1, 'empty text in "anchor"'),
    "number as text": (
        '{"anchor": "a", "positive": "b"}\n{"anchor": "a", "positive": 3}\n',
        2,
        "not a string",
    ),
    "score without a scored loss": (
        '{"anchor": "a", "positive": "b", "score": 0.5}\n',
        1,
        "task.loss=cosent",
    ),
    "negative on some pairs only": (
        '{"anchor": "a", "positive": "b", "negative": "c"}\n{"anchor": "d", "positive": "e"}\n',
        2,
        "give every pair a negative, or none",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_malformed_pair_files_end_with_file_and_line(case: str, tmp_path: Path) -> None:
    text, line, message = BAD_FILES[case]
    path = tmp_path / "pairs.jsonl"
    path.write_text(text)
    task, _ = embedding_task()
    with pytest.raises(DataError) as caught:
        task.fit(task.read(path, "auto"), {})
    assert f"pairs.jsonl line {line}" in str(caught.value) and message in str(caught.value)


def test_scored_pairs_need_a_numeric_score_and_csv_columns_are_checked_once(tmp_path: Path) -> None:
    task, _ = embedding_task(loss="cosent")
    path = tmp_path / "scored.jsonl"
    path.write_text(
        '{"anchor": "a", "positive": "b", "score": 1}\n{"anchor": "a", "positive": "c", "score": "high"}\n'
    )
    with pytest.raises(DataError, match="scored.jsonl line 2: .*must be a number"):
        task.read(path, "auto")
    csv = tmp_path / "pairs.csv"
    csv.write_text("query,answer\nq,a\n")
    with pytest.raises(DataError, match="task.anchor_column"):
        task.read(csv, "auto")


def _corpus(tmp_path: Path, rows: list[tuple[str, str]], name: str = "corpus.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
    return path


DOCS = [
    ("dnsmasq", "A lightweight DNS forwarder and DHCP server for small networks."),
    ("libxml2", "The XML C parser and toolkit developed for the GNOME project."),
    ("gimp", "The GNU Image Manipulation Program, for photo retouching and image composition."),
    ("vim", "Vim is an almost compatible version of the UNIX editor Vi, with many new features."),
]


def test_a_corpus_is_searched_for_pairs_and_for_queries_with_relevant_ids(tmp_path: Path) -> None:
    task, model = embedding_task()
    task.use_corpus(_corpus(tmp_path, DOCS))
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"query": "image editing program", "relevant": ["gimp"]})
        + "\n"
        + json.dumps({"query": "text editor", "relevant": "vim"})
        + "\n"
    )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"anchor": "image editing program", "positive": DOCS[2][1]})
        + "\n"
        + json.dumps({"anchor": "text editor", "positive": DOCS[3][1]})
        + "\n"
    )
    results = []
    for path in (queries, pairs):
        examples = task.read(path, "auto")
        task.check(examples)
        evaluation = task.evaluate(model, task.encode(examples, task.tokenizer), 8, 0)
        results.append(evaluation.metrics)
    assert results[0] == results[1]  # a pair's positive is found in the corpus by its text
    assert results[0]["corpus_size"] == 4 and results[0]["recall@10"] == 1.0


def test_predict_with_a_corpus_returns_its_nearest_documents(tmp_path: Path) -> None:
    task, model = embedding_task()
    task.use_corpus(_corpus(tmp_path, DOCS))
    [row] = task.predict(model, [DOCS[1][1]], 0)
    assert row["hits"][0]["id"] == "libxml2" and row["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [h["score"] for h in row["hits"]] == sorted((h["score"] for h in row["hits"]), reverse=True)
    assert "libxml2" in task.prediction_line(row, top=2).splitlines()[1]


def test_corpus_and_query_errors_name_their_line(tmp_path: Path) -> None:
    task, _ = embedding_task()
    with pytest.raises(DataError, match=r"corpus.jsonl line 3: document id 'a' was given already \(line 1\)"):
        task.use_corpus(_corpus(tmp_path, [("a", "x"), ("b", "y"), ("a", "z")]))
    with pytest.raises(DataError, match="corpus.jsonl line 2: document 'b' has no text"):
        task.use_corpus(_corpus(tmp_path, [("a", "x"), ("b", " ")]))
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "q", "relevant": ["zz"]}) + "\n")
    with pytest.raises(DataError, match="needs the corpus: give --corpus"):
        task.check(task.read(queries, "auto"))
    task.use_corpus(_corpus(tmp_path, DOCS))
    with pytest.raises(DataError, match="queries.jsonl line 1: relevant id 'zz' is not in the corpus"):
        task.check(task.read(queries, "auto"))
    with pytest.raises(DataError, match="queries.jsonl line 1: a retrieval query .* training"):
        task.fit(task.read(queries, "auto"), {})


def test_a_gzipped_file_reads_as_the_plain_one(tmp_path: Path) -> None:
    import gzip

    from tunesmith.data.corpus import read_corpus

    plain = _corpus(tmp_path, DOCS)
    packed = tmp_path / "corpus.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_corpus(packed) == read_corpus(plain)
    broken = tmp_path / "cut.jsonl.gz"
    broken.write_bytes(gzip.compress(plain.read_bytes())[:40])
    with pytest.raises(DataError, match="cut.jsonl.gz: cannot be unpacked"):
        read_corpus(broken)


def test_scored_pairs_are_judged_by_rank_correlation_with_a_bootstrap(tmp_path: Path) -> None:
    task, model = embedding_task(loss="cosent")
    assert task.metric_for(task.params, None) == "spearman"
    path = tmp_path / "scored.jsonl"
    rows = [
        ("a DNS forwarder", "a lightweight DNS forwarder and DHCP server", 1.0),
        ("a DNS forwarder", "a DHCP and DNS server for small networks", 0.8),
        ("a DNS forwarder", "an XML parsing library", 0.1),
        ("an image editor", "the GNU Image Manipulation Program", 0.9),
        ("an image editor", "a text editor for the terminal", 0.3),
        ("an image editor", "a library of compression routines", 0.0),
    ]
    path.write_text("".join(json.dumps({"anchor": a, "positive": p, "score": s}) + "\n" for a, p, s in rows))
    examples = task.read(path, "auto")
    task.fit(examples, {})
    features = task.encode(examples, task.tokenizer)
    evaluation = task.evaluate(model, features, 8, 0)
    assert evaluation.metrics["spearman"] > 0.5 and evaluation.metrics["examples"] == 6
    resample = task.resampler(features, evaluation)
    indices = np.tile(np.arange(6), (3, 1))
    assert resample(indices)["spearman"] == pytest.approx([evaluation.metrics["spearman"]] * 3)
    batch = task.collate(features, 0)
    loss, count = task.loss(model, batch)
    assert count == 6 and loss.item() > 0


def test_the_share_of_pairs_the_base_model_already_gets_right_is_said(tmp_path: Path) -> None:
    from tunesmith.models.catalog import resolve_model

    task, _ = embedding_task()
    pairs = pairs_of(
        [(query, text) for query, text in [("dns server", DOCS[0][1]), ("xml parser", DOCS[1][1])]]
    )
    pairs += pairs_of([("photo retouching", DOCS[2][1]), ("photo retouching tool", DOCS[3][1])])  # one wrong
    said = task.fit_baseline(resolve_model("minilm"), pairs, tmp_path / "probe", seed=0)
    assert said is not None and "among 4 training positives for 3 of 4 training pairs (75.0%)" in said


def test_a_corpus_above_the_exact_search_limit_is_searched_approximately_with_the_same_results(
    tmp_path: Path,
) -> None:
    """Real Debian pairs and documents: with task.exact_search_max_documents below the corpus, use_corpus says
    the search is approximate, and evaluation and predict (through the faiss index) agree with exact search."""
    pytest.importorskip("faiss")
    import gzip

    root = Path(__file__).resolve().parents[2] / "data/debian-retrieval"
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [(r["id"], r["text"]) for r in map(json.loads, [next(f) for _ in range(200)])]
    corpus = _corpus(tmp_path, docs)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((root / "test.jsonl").read_text(encoding="utf-8").splitlines(True)[:30]))
    metrics, top = {}, {}
    for limit in (None, 100):
        task, model = embedding_task(max_length=96, exact_search_max_documents=limit)
        note = task.use_corpus(corpus)
        assert (note is None) == (limit is None)
        examples = task.read(pairs, "auto")
        metrics[limit] = task.evaluate(model, task.encode(examples, task.tokenizer), 16, 0).metrics
        top[limit] = [h["id"] for h in task.predict(model, [docs[7][1]], 0)[0]["hits"]]
    assert "200 documents searched approximate: faiss IVF56,SQ8" in note
    assert metrics[100]["corpus_size"] == metrics[None]["corpus_size"] == 230
    assert metrics[100]["ndcg@10"] == pytest.approx(metrics[None]["ndcg@10"], abs=0.02)
    assert top[100][0] == top[None][0] == docs[7][0]
