"""Several processes, on PyTorch's own engine: torchrun's agent starts them (training/launch.py), accelerate sets up
the process group from torchrun's variables (gloo on CPU, NCCL on GPUs), and the loop deals each optimizer
step's micro-batches to the processes.

Why the gradients are summed here and not in DDP's backward hook: an optimizer step is a window of
`gradient_accumulation` micro-batches dealt round-robin to the processes, so that the effective batch and the
schedule do not depend on the process count. The last window of an epoch can be short and leave a process
without a micro-batch, and DDP needs every process to run the same passes: its forward broadcasts buffers and
its reducer all-reduces in backward. So the loss runs on the unwrapped model (accelerate's DDP wrapper only
broadcasts rank 0's weights at the start), and one all-reduce of the flattened trainable gradients
(torch.distributed, the same collective DDP uses) sums them after the window.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS


def launched() -> bool:
    """True inside a process torchrun started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """Rank 0 (or no distributed run): the one process that prints and writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


def check_process_count(cfg: Any, processes: int) -> None:
    """Refuse a process count that cannot share each optimizer step's micro-batches evenly."""
    if processes > 1 and cfg.gradient_accumulation % processes:
        raise ConfigError(
            f"with {processes} processes, train.gradient_accumulation must be a multiple of {processes}: each "
            "optimizer step's micro-batches are dealt to the processes, so the effective batch "
            f"(batch_size x gradient_accumulation = {cfg.batch_size} x {cfg.gradient_accumulation}) stays what "
            "the config says; raise gradient_accumulation (and lower batch_size to keep the same batch)"
        )


def check_strategy(config: Any) -> None:
    """Refuse, before any process starts, a method or precision FSDP cannot shard (`config`: a RunConfig)."""
    if config.distributed.strategy != "fsdp":
        return
    method = config.method.name
    if (why := METHODS.get(method).cannot_shard) is not None:
        raise ConfigError(
            f"method {method} cannot train with distributed.strategy=fsdp: {why}; use distributed.strategy=ddp"
        )
    if config.train.precision == "fp16":
        raise ConfigError(
            "distributed.strategy=fsdp trains in bf16 or fp32 (fp16 needs a loss scaler over the shards); "
            "set train.precision to bf16 or auto"
        )


def sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum each parameter's gradient over all processes (a missing gradient counts as zeros)."""
    import torch.distributed as dist

    grads = []
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    for grad, summed in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(summed)


def sum_values(values: Sequence[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def deal(window: Sequence[list[int]], rank: int, processes: int) -> tuple[list[tuple[int, list[int]]], int]:
    """This process's share of one optimizer step's micro-batches, as (index in the window, example indices),
    and how many passes every process runs. Micro-batch i goes to process i mod N: each to exactly one
    process, none twice. `passes` is the busiest process's count; FSDP needs every process to run as many
    (each pass gathers from all), so one left short pads with zero-weight passes."""
    mine = list(enumerate(window))[rank::processes]
    return mine, math.ceil(len(window) / processes)


def from_main(data: dict[str, Any] | None, device: torch.device) -> dict[str, Any]:
    """The main process's `data` (JSON-able) on every process; a collective. Sent as JSON bytes, not pickle."""
    import json

    import torch.distributed as dist

    payload = json.dumps(data).encode() if is_main_process() else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if is_main_process():
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return json.loads(bytes(buffer.cpu().tolist()))


def micro_batch_seed(seed: int, step: int, index: int) -> int:
    """The random seed of micro-batch `index` of optimizer step `step`: dropout then depends on which examples
    are trained on, not on which process runs them or what ran before (so 2 processes equal 1, and a resumed
    run equals an uninterrupted one)."""
    return ((seed * 1_000_003 + step) * 4099 + index) % (2**63)
