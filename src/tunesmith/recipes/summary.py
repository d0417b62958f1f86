"""run.json: what a finished training run did, in numbers (a pure function of what the stages measured), and
the plain words said when the run keeps the model it started from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.planning.memory import peak_resident_bytes
from tunesmith.sections import TrainConfig
from tunesmith.training.checkpoint import LoopState
from tunesmith.training.loop import LoopResult


@dataclass(frozen=True)
class Facts:
    """What the summary says beside the loop's result, gathered by the stages that knew it."""

    task: str
    method: str
    model: str
    examples: dict[str, int]
    """Examples per split: train, validation, test."""
    trainable_parameters: int
    total_parameters: int
    start: str | None
    """What the model was at step 0 when it competes with the checkpoints: "base" (the base model),
    "start" (train.init_from's run); None: a new head, it does not compete."""
    mean_length: float
    """Mean tokens per training example."""
    device: str
    processes: int
    seconds: float
    """Wall time of the training loop."""
    peak: dict[str, Any]
    estimate: dict[str, Any] | None


def summarise(facts: Facts, result: LoopResult, metric: str) -> dict[str, Any]:
    """run.json's content: what was trained, how far, which model the run holds and why, and how fast."""
    state = result.state
    holds_start = facts.start is not None and state.start is not None and state.best_step == 0
    return {
        "task": facts.task,
        "method": facts.method,
        "model": facts.model,
        "trainable_parameters": facts.trainable_parameters,
        "total_parameters": facts.total_parameters,
        "examples": dict(facts.examples),
        "optimizer_steps": state.step,
        "best_step": state.best_step,
        f"best_validation_{metric}": state.best,
        f"base_validation_{metric}": state.start,
        "best_tuned_validation": state.tuned_best,
        "best_tuned_beats_base_share": state.tuned_best_share,
        "holds": facts.start if holds_start else "tuned",
        "stopped_early": state.stopped_early,
        "train_seconds": round(facts.seconds, 2),
        "train_step_seconds": round(result.step_seconds, 2),
        "train_samples_per_second": round(result.samples_per_second, 2),
        "train_tokens_per_second": round(result.samples_per_second * facts.mean_length, 1),
        "device": facts.device,
        "processes": facts.processes,
        **facts.peak,
        "estimate": facts.estimate,
    }


def measured_peak(device: torch.device) -> dict[str, Any]:
    """The training's peak memory as measured: torch's allocator on a GPU; on the CPU the process's peak
    resident memory (which includes anything else this process did before)."""
    if device.type == "cuda":
        return {
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
            "peak_memory_of": "cuda allocator",
        }
    return {"peak_memory_bytes": peak_resident_bytes(), "peak_memory_of": "process resident memory"}


def not_kept_line(state: LoopState, what: str, cfg: TrainConfig) -> str:
    """Why the run holds its start model, in plain words."""
    best, start, share = state.tuned_best, state.start, state.tuned_best_share
    keeps = f"the run keeps {what} (train.keep=better). train.keep=tuned keeps the fine-tuned weights instead"
    if (
        best is not None
        and start is not None
        and share is not None
        and best != start
        and ((best > start) == greater_is_better(cfg.metric))
    ):
        return (
            f"fine-tuning did not clearly beat {what} on validation: the best checkpoint's {cfg.metric} "
            f"{best:.4f} is above its {start:.4f} on this split, but in only {share:.0%} of bootstrap "
            f"resamples of it (train.keep_confidence={cfg.keep_confidence:g}); {keeps}"
        )
    return (
        f"fine-tuning did not beat {what} on validation ({cfg.metric}: {start:.4f}, best fine-tuned checkpoint "
        f"{_shown(best)}): {keeps}"
    )


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"
