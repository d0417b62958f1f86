"""`tunesmith mine`: a hard negative per pair from the base model, never the positive, and never a document
the base model finds nearly as close as the positive (a likely second right answer)."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.config import build_config
from tunesmith.recipes.mine import mine

ROOT = Path(__file__).resolve().parents[2]


def test_mined_triplets_skip_near_copies_of_the_positive(tmp_path: Path) -> None:
    rows = [
        json.loads(line)
        for line in (ROOT / "data/debian-retrieval/train.jsonl").read_text().splitlines()[:40]
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"query": r["anchor"], "answer": r["positive"]}) + "\n" for r in rows)
    )
    corpus = tmp_path / "corpus.jsonl"
    documents = [{"id": f"d{i}", "text": r["positive"]} for i, r in enumerate(rows)]
    # a near copy of the first positive: the base model ranks it right after the positive itself
    documents.append(
        {"id": "copy", "text": rows[0]["positive"].replace("This package", "This Debian package")}
    )
    corpus.write_text("".join(json.dumps(d) + "\n" for d in documents))
    config = build_config(
        {
            "task": {"name": "embedding", "anchor_column": "query", "positive_column": "answer"},
            "data": {"train": str(pairs)},
        }
    )
    out = tmp_path / "triplets.jsonl"
    mined = mine(config, out, corpus, margin=0.05)
    triplets = [json.loads(line) for line in out.read_text().splitlines()]
    assert mined.written == len(triplets) >= 35 and mined.written + mined.without_negative == 40
    assert set(triplets[0]) == {"query", "answer", "negative"}
    for t in triplets:
        assert t["negative"] != t["answer"]
    first = next(t for t in triplets if t["query"] == rows[0]["anchor"])
    assert first["negative"] != documents[-1]["text"] and mined.skipped_close >= 1
    assert mined.negative_similarity < mined.positive_similarity
    # the strictest margin leaves only documents the base model finds unrelated (cosine <= 0): few pairs have one
    strict = mine(config, out, corpus, margin=1.0)
    assert strict.without_negative > mined.without_negative and strict.negative_similarity <= 0
