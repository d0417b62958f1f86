"""`tunesmith mine PAIRS --out TRIPLETS`: hard negatives for retrieval pairs, found by the base model.

For each (anchor, positive) pair, the untouched encoder ranks the corpus (`--corpus`, or else the pairs' own
positives) by similarity to the anchor; the negative is the best-ranked document that is not the positive
and scores below (1 - margin) times the positive's own similarity. A document that the base model finds
nearly as close to the anchor as the positive is as likely a second right answer that the data did not list
(a false negative, which would teach the model to push a right answer away) as a hard wrong one, so it is
skipped (sentence-transformers' `mine_hard_negatives` calls this a relative margin). A pair without such a
document among its DEPTH best is left out, and counted.

The triplets are written with the task's own column names, ready for `train` (MNRL then ranks each anchor's
positive above its own negative and every other pair's positive and negative).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.config import RunConfig
from tunesmith.data.readers import FileFormat
from tunesmith.errors import DataError
from tunesmith.files import write_text_atomic
from tunesmith.models.catalog import resolve_model
from tunesmith.models.loader import load_tokenizer
from tunesmith.tasks import build_task

DEPTH = 50
"""Documents searched per anchor for a negative below the margin."""


@dataclass
class Mined:
    written: int
    without_negative: int
    """Pairs left out: none of their DEPTH best documents was below the margin."""
    skipped_close: int
    """Candidates passed over as likely false negatives (above the margin)."""
    positive_similarity: float
    negative_similarity: float
    """Mean cosine of anchor and positive, and of anchor and the chosen negative, over the written triplets."""


def mine(config: RunConfig, out: Path, corpus: Path | None, margin: float, depth: int = DEPTH) -> Mined:
    """Write `out`: each pair of config.data.train with a hard negative from the base model config.model."""
    task = build_task(config.task, config.model)
    resolved = resolve_model(config.model.name)
    task.use_tokenizer(load_tokenizer(resolved, config.model))
    fmt = FileFormat(config.data.format, config.data.delimiter)
    pairs = [p for p in task.read(config.data.train, fmt) if p.positive is not None]  # type: ignore[attr-defined]
    if corpus is not None:
        task.use_corpus(corpus, fmt)  # type: ignore[attr-defined]
        documents = [doc.text for doc in task.corpus]  # type: ignore[attr-defined]
    else:
        documents = list(dict.fromkeys(p.positive for p in pairs))
    if len(documents) < 2:
        raise DataError(Path(config.data.train), None, "mining needs at least 2 documents to choose from")
    model = task.load_model(resolved).to("cuda" if torch.cuda.is_available() else "cpu")
    pad = task.tokenizer.pad_token_id or 0
    anchors = task.embed_texts(model, [p.anchor for p in pairs], pad)  # type: ignore[attr-defined]
    positives = task.embed_texts(model, [p.positive for p in pairs], pad)  # type: ignore[attr-defined]
    rows = task.tokenizer(documents, truncation=True, max_length=task.model_cfg.max_length)["input_ids"]
    index = task.corpus_index(model, rows, 64, pad)  # type: ignore[attr-defined]
    found, ranked = index.search(anchors, depth + 1)
    lines: list[str] = []
    skipped, kept_positive, kept_negative = 0, [], []
    columns = task.params
    for pair, anchor, positive, scores, order in zip(
        pairs, anchors, positives, found.tolist(), ranked.tolist(), strict=True
    ):
        own = float(anchor @ positive)
        chosen = None
        for i, score in zip(order, scores, strict=True):
            if i < 0 or documents[i] in (pair.positive, pair.anchor):
                continue  # faiss pads a short list of results with -1
            if score > (1 - margin) * own:
                skipped += 1
                continue
            chosen = (i, score)
            break
        if chosen is None:
            continue
        record: dict[str, Any] = {
            columns.anchor_column: pair.anchor,  # type: ignore[attr-defined]
            columns.positive_column: pair.positive,  # type: ignore[attr-defined]
            columns.negative_column: documents[chosen[0]],  # type: ignore[attr-defined]
        }
        lines.append(json.dumps(record, ensure_ascii=False))
        kept_positive.append(own)
        kept_negative.append(chosen[1])
    write_text_atomic(out, "".join(line + "\n" for line in lines), "triplets")
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return Mined(len(lines), len(pairs) - len(lines), skipped, mean(kept_positive), mean(kept_negative))
