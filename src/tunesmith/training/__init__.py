"""The training loop we own: batching, the optimizer step, validation, checkpoints, early stopping."""
