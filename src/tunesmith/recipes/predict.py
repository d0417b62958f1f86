"""Predict: texts from arguments, a file or stdin -> ranked labels with probabilities (classification) or
generated answers (chat, summarization, QA), in batches, with the prompts rendered exactly as in training.
What the inputs are and what a prediction says is the task's to know (Task.prediction_inputs, predict)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO


def predictions(
    trained: Any, texts: list[str] | None, file: Path | None, stdin: TextIO | None
) -> list[dict[str, Any]]:
    """`tunesmith predict`: one JSON-ready row per input of the run's task."""
    task = trained.task
    return task.predict(trained.model, task.prediction_inputs(texts, file, stdin), trained.pad_id)


def predict_texts(trained: Any, texts: list[str], batch_size: int = 64) -> list[list[tuple[str, float]]]:
    """A classification run: for each text, (label, probability) pairs from most to least likely."""
    return trained.task.rank(trained.model, texts, trained.pad_id, batch_size)


def embed_texts(trained: Any, texts: list[str], batch_size: int = 64) -> Any:
    """An embedding run: each text's unit-length vector (a texts x dimensions float32 tensor)."""
    return trained.task.embed_texts(trained.model, texts, trained.pad_id, batch_size)


def generate_answers(trained: Any, texts: list[str]) -> list[str]:
    """A text-writing run: for each text (a user message for chat, a document for summarization), the
    model's answer."""
    return [row["output"] for row in trained.task.predict(trained.model, texts, trained.pad_id)]
