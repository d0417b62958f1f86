"""Embedding fine-tuning: retrieval (a query near the texts that answer it) and similarity. One loss per
module; each registers itself in LOSSES (a new loss is one file and one name in LOSS_MODULES). The losses
work on a batch's pooled vectors (loss.Embedded), so a test can check each against its formula; the task
that feeds them (task.py) is built on top."""

from importlib import import_module

from tunesmith.tasks.embedding.loss import LOSSES, Embedded, EmbeddingLoss, matryoshka

LOSS_MODULES = ("mnrl", "cosent", "cosine")
"""Each module registers its loss on import."""
for _module in LOSS_MODULES:
    import_module(f"tunesmith.tasks.embedding.{_module}")

from tunesmith.tasks.embedding import task  # noqa: E402,F401  (registers the task)

__all__ = ["LOSSES", "Embedded", "EmbeddingLoss", "matryoshka"]
