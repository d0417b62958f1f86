"""How the processes of a run share each optimizer step, so that the loop reads as the single-process loop:
one process; DDP (every process holds the whole model, micro-batches are dealt out, gradients summed after
the window); FSDP (training/sharding.py: parameters, gradients and optimizer state in shards, every process
runs the same passes because each one gathers from all). Each answers the loop's few questions: which passes
this process runs, how a pass computes its loss, what is summed across processes, who measures validation,
what a saved model or checkpoint needs from every process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from tunesmith.methods.base import Method
from tunesmith.tasks.base import Task
from tunesmith.training import sharding
from tunesmith.training.distributed import deal, from_main, sum_gradients, sum_values

T = TypeVar("T")
Pass = tuple[int, list[int], bool]
"""One forward/backward pass of a process: (the micro-batch's index in the window, its example indices,
whether it is real; False: a zero-weight pass that only joins the collectives)."""


class OneProcess:
    """A run in one process: every micro-batch of the window, nothing to share."""

    splits_micro_batches = True
    """Whether a micro-batch may run as several passes of at most train.max_batch_tokens tokens."""
    every_process_checkpoints = False
    """Whether every process takes part in writing a checkpoint (gathering sharded tensors)."""

    def __init__(self, accelerator: Any):
        self.accelerator = accelerator
        self.world = accelerator.num_processes
        self.main = accelerator.is_main_process

    def shard(self, task: Task, model: torch.nn.Module) -> None:
        """Called before the optimizer is built (FSDP: it must hold the shards)."""

    def prepare(self, model: torch.nn.Module, optimizer: Any) -> tuple[torch.nn.Module, Any]:
        """The model as the loop trains it, and its optimizer (accelerate's wrappers)."""
        return self.accelerator.prepare(model, optimizer)

    def passes(self, window: list[list[int]]) -> Iterator[Pass]:
        for i, indices in enumerate(window):
            yield i, indices, True

    def loss(self, task: Task, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """(summed loss, count) of one pass, on the unwrapped model: DDP's own forward would broadcast buffers,
        a collective that a process without a micro-batch would not join; its gradients are summed after
        the window instead (`summed`)."""
        return task.loss(self.accelerator.unwrap_model(model), batch)

    def before_backward(self, last: bool) -> None:
        """Called before each pass's backward (`last`: the window's last pass)."""

    def summed(self, trainable: list[torch.Tensor], totals: list[float]) -> list[float]:
        """The window's gradients and totals (loss, count, samples) over every process."""
        return totals

    def agreed(self, flags: list[bool]) -> list[bool]:
        """Decisions every process must take alike (stop, checkpoint): true if any process says so."""
        return flags

    def validation(self, judge: Callable[[], dict[str, float]]) -> dict[str, float]:
        """The validation metrics, measured by `judge`, on every process."""
        return judge()

    def measure(self, run: Callable[[], T]) -> T:
        """`run()`: a validation's forward passes."""
        return run()

    def best_weights(self, model: torch.nn.Module, method: Method | None) -> dict[str, torch.Tensor] | None:
        """What save_best needs beside the model; None: the model holds its weights whole."""
        return None


class DataParallel(OneProcess):
    """DDP: micro-batch i of the window goes to process i mod N, the gradients are summed after the window
    (training/distributed.py), the main process measures validation and the others wait for its numbers."""

    def passes(self, window: list[list[int]]) -> Iterator[Pass]:
        mine, _ = deal(window, self.accelerator.process_index, self.world)
        for i, indices in mine:  # no collective inside a pass, so no padding
            yield i, indices, True

    def summed(self, trainable: list[torch.Tensor], totals: list[float]) -> list[float]:
        sum_gradients(trainable)
        return sum_values(totals, self.accelerator.device)

    def agreed(self, flags: list[bool]) -> list[bool]:
        return [v > 0 for v in sum_values([float(f) for f in flags], self.accelerator.device)]

    def validation(self, judge: Callable[[], dict[str, float]]) -> dict[str, float]:
        return from_main(judge() if self.main else None, self.accelerator.device)


class Sharded(DataParallel):
    """FSDP: the model's units are sharded before the optimizer is built (it holds the shards); every process
    runs as many passes as the busiest (a process left short runs zero-weight ones), each micro-batch whole;
    FSDP's reduce-scatter sums the gradients; every process takes part in validation, saving and
    checkpointing, which gather whole tensors."""

    splits_micro_batches = False
    every_process_checkpoints = True

    def shard(self, task: Task, model: torch.nn.Module) -> None:
        self.root = sharding.shard(task, model, self.accelerator.device)

    def prepare(self, model: torch.nn.Module, optimizer: Any) -> tuple[torch.nn.Module, Any]:
        return model, self.accelerator.prepare_optimizer(optimizer)

    def passes(self, window: list[list[int]]) -> Iterator[Pass]:
        mine, passes = deal(window, self.accelerator.process_index, self.world)
        for k in range(passes):
            yield (*mine[k], True) if k < len(mine) else (0, window[0], False)

    def loss(self, task: Task, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        return self.root(batch)

    def before_backward(self, last: bool) -> None:
        sharding.set_gradient_sync(self.root, last)  # reduce-scatter the summed gradients once, at the end

    def summed(self, trainable: list[torch.Tensor], totals: list[float]) -> list[float]:
        return sum_values(totals, self.accelerator.device)

    def validation(self, judge: Callable[[], dict[str, float]]) -> dict[str, float]:
        return judge()  # every process takes part in each forward pass

    def measure(self, run: Callable[[], T]) -> T:
        return sharding.through_root(self.root, run)

    def best_weights(self, model: torch.nn.Module, method: Method | None) -> dict[str, torch.Tensor] | None:
        whole = method is None or method.saves_full_model  # a whole-model method saves buffers too
        return sharding.all_weights(model) if whole else sharding.trainable_weights(model)


def strategy_for(accelerator: Any, sharded: bool) -> OneProcess:
    """The strategy of this run: FSDP when asked and there is more than one process, else DDP over several
    processes, else one process."""
    if accelerator.num_processes == 1:
        return OneProcess(accelerator)
    return Sharded(accelerator) if sharded else DataParallel(accelerator)
