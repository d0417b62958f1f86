"""The embedding task on the packaged MiniLM, built as a run builds it, for the unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tunesmith.models.catalog import resolve_model
from tunesmith.models.loader import load_tokenizer
from tunesmith.sections import ModelConfig
from tunesmith.tasks import build_task
from tunesmith.tasks.embedding.task import Embedding, EmbeddingParams, TextPair


def embedding_task(max_length: int = 256, **params: Any) -> tuple[Embedding, torch.nn.Module]:
    """The task (fitted on no data: MiniLM's own pooling) and the pretrained MiniLM it embeds with."""
    cfg = ModelConfig(name="minilm", max_length=max_length)
    task = build_task(EmbeddingParams(**params), cfg)
    resolved = resolve_model("minilm")
    task.use_tokenizer(load_tokenizer(resolved, cfg))
    return task, task.load_model(resolved)  # type: ignore[return-value]


def pairs_of(rows: Sequence[tuple[str, ...]], path: Path = Path("pairs.jsonl")) -> list[TextPair]:
    """(anchor, positive[, negative]) rows as the task's examples, numbered like lines of a file."""
    return [
        TextPair(row[0], row[1], row[2] if len(row) > 2 else None, None, path, i + 1)
        for i, row in enumerate(rows)
    ]
