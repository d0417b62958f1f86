"""What one training run will cost, from a short calibration on the real model and data.

Peak memory = runtime + weights + the larger of the two phases of a run:
  training     gradients (one per trainable parameter) + AdamW's two moments + activations: the rise in
               memory while one forward and backward pass runs on the epoch's longest batch (what autograd
               keeps, its gradients, temporaries), measured as it happens, or, where larger, the peak of
               the first real training steps above runtime and weights, less gradients and moments (on the
               CPU the allocator keeps memory freed by earlier passes, so steps need more than one pass
               shows)
  evaluation   the best model loaded again for the final test + the rise during a no-grad forward pass on
               the longest validation batch (the optimizer's state is freed before this phase)
where runtime is the process itself (Python, torch, the libraries, tokenizer, encoded data: resident memory
once the model's weights are read in, less the model's tensors) and weights are the model's tensors as
loaded (a QLoRA base at its quantized size). On a GPU the same parts are GPU memory, read from torch's allocator, and runtime
is 0. On the CPU the rises are read from the process's resident memory (its peak, or samples taken while
the pass runs where an earlier peak hides it).

Time per epoch = forward+backward seconds per token times the epoch's padded tokens, plus the seconds of one
update (clipping, AdamW) times the optimizer steps per epoch, both timed on real training steps on the
epoch's own batches after a few warm-up steps. Validation is not included.

The calibration's optimizer steps are undone (the trainable weights are copied back) and the random state is
restored, so training afterwards is exactly what it would have been without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

from tunesmith.methods.base import Method, count_parameters
from tunesmith.planning.memory import (
    peak_increment,
    resident_bytes,
    tensor_bytes,
    trainable_bytes,
)
from tunesmith.sections import TrainConfig
from tunesmith.tasks.base import Task
from tunesmith.training.loop import build_optimizer
from tunesmith.units import human

WARMUP_STEPS = 4
"""Real training steps before timing: the first few run slower (optimizer state, allocator pools)."""
TIMED_STEPS = 4
WORTH_STEPS = 5 * (WARMUP_STEPS + TIMED_STEPS)
"""train.estimate=auto skips the estimate of a run with fewer optimizer steps than this (and no memory
budget): the estimate's real steps plus its two passes would be a quarter of the run or more (measured: 195
of 345 s of a 3-step prompt-tuning run)."""
MAX_COUNTED_BATCHES = 2000
"""Batches collated to count an epoch's padded tokens (a sample of them beyond this, scaled up)."""


def worth_estimating(cfg: TrainConfig, steps: int) -> bool:
    """train.estimate: always, never, or (auto) for a run of WORTH_STEPS or more; a memory budget is checked
    against the estimate, so it always measures."""
    if cfg.memory_budget is not None or cfg.estimate == "always":
        return True
    return cfg.estimate == "auto" and steps >= WORTH_STEPS


@dataclass
class Estimate:
    method: str
    trainable_parameters: int
    total_parameters: int
    runtime_bytes: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    evaluation_bytes: int
    steps_per_epoch: int
    epoch_seconds: float
    device: str

    @property
    def peak_bytes(self) -> int:
        training = self.gradients_bytes + self.optimizer_bytes + self.activations_bytes
        return self.runtime_bytes + self.weights_bytes + max(training, self.evaluation_bytes)

    def line(self) -> str:
        share = 100 * self.trainable_parameters / max(self.total_parameters, 1)
        return (
            f"{self.method}: {self.trainable_parameters:,} trainable parameters ({share:.2f}%); "
            f"peak memory ≈ {human(self.peak_bytes)} (weights {human(self.weights_bytes)}, gradients "
            f"{human(self.gradients_bytes)}, optimizer {human(self.optimizer_bytes)}, activations "
            f"{human(self.activations_bytes)}; evaluation {human(self.evaluation_bytes)}; runtime "
            f"{human(self.runtime_bytes)}); ≈ {format_seconds(self.epoch_seconds)} per epoch "
            f"({self.steps_per_epoch} steps on {self.device})"
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "peak_bytes": self.peak_bytes}


@dataclass
class ShardedShare:
    """Each process's share of the model under FSDP, counted from the tensors, not measured: a measurement
    runs the whole model on one device, which an FSDP run is there to avoid. Activations come on top."""

    method: str
    processes: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int

    @classmethod
    def of(cls, model: torch.nn.Module, method: str, processes: int) -> ShardedShare:
        grads = math.ceil(trainable_bytes(model) / processes)
        return cls(method, processes, math.ceil(tensor_bytes(model) / processes), grads, 2 * grads)

    @property
    def peak_bytes(self) -> int:
        """A floor of the peak: weights, gradients and AdamW's moments, without activations."""
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes

    def line(self) -> str:
        return (
            f"{self.method} with fsdp over {self.processes} processes: each holds at least "
            f"{human(self.peak_bytes)} (weights {human(self.weights_bytes)}, gradients "
            f"{human(self.gradients_bytes)}, optimizer {human(self.optimizer_bytes)}) plus activations; "
            "`tunesmith plan` measures activations and time in one process"
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "peak_bytes_at_least": self.peak_bytes}


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_backward(
    task: Task, model: torch.nn.Module, method: Method, batch: dict[str, torch.Tensor]
) -> None:
    loss_sum, count = task.loss(model, batch)
    if (extra := method.penalty(model)) is not None:
        loss_sum = loss_sum + count * extra
    loss_sum.backward()


@contextmanager
def restored_afterwards(model: torch.nn.Module) -> Iterator[None]:
    """The trainable parameters as they were, after a block that takes optimizer steps on them."""
    saved = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)
        model.zero_grad(set_to_none=True)


def estimate(
    task: Task,
    model: torch.nn.Module,
    method: Method,
    features: Sequence[dict[str, Any]],
    val_features: Sequence[dict[str, Any]],
    cfg: TrainConfig,
    pad_id: int,
) -> Estimate:
    """Calibrate `model` (the method already applied, on its device, nothing else loaded since) on the
    run's own batches."""
    device = next(model.parameters()).device
    weights = tensor_bytes(model)
    runtime = 0
    if device.type == "cpu":
        page_in(model)  # weights mapped from a safetensors file are not resident until first read
        runtime = max(resident_bytes() - weights, 0)

    def collate(rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in task.collate(list(rows), pad_id).items()}

    batches, epoch_tokens, longest = _epoch_shape(task, features, cfg, collate)
    was_training = model.training
    try:
        with _random_state_kept():
            model.eval()
            evaluation = weights + _evaluation_rise(task, model, val_features, cfg, collate, device)
            model.train()
            activations = peak_increment(lambda: _forward_backward(task, model, method, longest), device)
            model.zero_grad(set_to_none=True)
            steps_peak, per_token, per_update = _timed_steps(
                task, model, method, features, batches, cfg, collate
            )
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)

    trainable, total = count_parameters(model)
    grads = trainable_bytes(model)
    # the steps' peak above the model as loaded, less the gradients and AdamW's two moments
    activations = max(activations, steps_peak - runtime - weights - 3 * grads)
    steps = math.ceil(len(batches) / cfg.gradient_accumulation)
    return Estimate(
        method=method.name,
        trainable_parameters=trainable,
        total_parameters=total,
        runtime_bytes=runtime,
        weights_bytes=weights,
        gradients_bytes=grads,
        optimizer_bytes=2 * grads,
        activations_bytes=activations,
        evaluation_bytes=evaluation,
        steps_per_epoch=steps,
        epoch_seconds=per_token * epoch_tokens + steps * per_update,
        device=str(device),
    )


def _epoch_shape(
    task: Task,
    features: Sequence[dict[str, Any]],
    cfg: TrainConfig,
    collate: Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]],
) -> tuple[list[list[int]], float, dict[str, torch.Tensor]]:
    """The first epoch's batches as training will draw them, its padded tokens (counted on up to
    MAX_COUNTED_BATCHES of them), and its longest batch, collated."""
    batches = task.epoch_batches(features, cfg.batch_size, cfg.seed, 0, bool(cfg.group_by_length))
    counted = batches if len(batches) <= MAX_COUNTED_BATCHES else batches[:: len(batches) // 1000]
    tokens = [task.batch_tokens(collate([features[j] for j in b])) for b in counted]
    longest = collate([features[j] for j in counted[max(range(len(counted)), key=lambda i: tokens[i])]])
    return batches, sum(tokens) * len(batches) / len(counted), longest


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """torch's random state (CPU and CUDA) as it was before the block: calibrating changes nothing that
    training then draws."""
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _timed_steps(
    task: Task,
    model: torch.nn.Module,
    method: Method,
    features: Sequence[dict[str, Any]],
    batches: list[list[int]],
    cfg: TrainConfig,
    collate: Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]],
) -> tuple[int, float, float]:
    """Real training steps on the run's batches, undone afterwards: the memory peak over the warm-up steps,
    then from the timed ones the forward+backward seconds per token and the clipping+update seconds per
    step."""
    device = next(model.parameters()).device
    with restored_afterwards(model):
        optimizer = build_optimizer(model, cfg)

        def step(indices: list[int]) -> tuple[int, float, float]:
            """(tokens, forward+backward seconds, clipping+optimizer seconds) of one real step."""
            batch = collate([features[j] for j in indices])
            _sync(device)
            start = time.perf_counter()
            _forward_backward(task, model, method, batch)
            _sync(device)
            middle = time.perf_counter()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            return task.batch_tokens(batch), middle - start, time.perf_counter() - middle

        order = [batches[i % len(batches)] for i in range(WARMUP_STEPS + TIMED_STEPS)]
        # the moments, kernels, the allocator's pools settle; the rise over these steps also holds what
        # the allocator keeps from one step to the next, which a single pass does not show
        level = allocated_bytes(device)
        steps_peak = level + peak_increment(lambda: [step(i) for i in order[:WARMUP_STEPS]], device)
        timed = [step(indices) for indices in order[WARMUP_STEPS:]]
        per_token = sum(t[1] for t in timed) / max(sum(t[0] for t in timed), 1)
        per_update = sum(t[2] for t in timed) / len(timed)
        optimizer.state.clear()  # the moments: free them now
    return steps_peak, per_token, per_update


def allocated_bytes(device: torch.device) -> int:
    """Memory in use now: the allocator's on a GPU, the process's resident memory on the CPU."""
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else resident_bytes()


def page_in(model: torch.nn.Module) -> None:
    """Read every weight once, so that memory-mapped ones count in resident memory as they will in training."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.numel() and t.device.type == "cpu":
                t.reshape(-1)[:: max(1, 4096 // t.element_size())].sum()


def _evaluation_rise(
    task: Task,
    model: torch.nn.Module,
    val_features: Sequence[dict[str, Any]],
    cfg: TrainConfig,
    collate: Any,
    device: torch.device,
) -> int:
    """The rise during a no-grad forward pass on the longest validation batch."""
    if not val_features:
        return 0
    longest = sorted(val_features, key=lambda f: -f["length"])[: cfg.eval_batch_size]
    batch = collate(longest)

    def forward() -> None:
        with torch.no_grad():
            task.loss(model, batch)

    return peak_increment(forward, device)
