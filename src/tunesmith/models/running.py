"""Running a model outside training: batches moved to its device, eval mode without autograd."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on `device` (copied without blocking where the device allows)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.device]:
    """The block runs the model in eval mode (no dropout) without autograd, and gets its device; the model's
    training mode is restored afterwards, also on error."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)
