"""Memory of a training process, measured part by part: the model's tensors as loaded, and how far memory
rises while a pass runs (on a GPU from torch's allocator, on the CPU from the process's resident memory)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import torch

from tunesmith.errors import ConfigError
from tunesmith.units import parse_size


def tensor_bytes(model: torch.nn.Module) -> int:
    """Parameters and buffers as they sit in memory (quantized weights at their packed size), shared
    storages counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def trainable_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_resident_bytes() -> int:
    """The most resident memory this process has had (Linux VmHWM, as ru_maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_increment(run: Callable[[], Any], device: torch.device) -> int:
    """How far memory rises above its current level while `run()` runs: CUDA's allocator peak on a GPU; on
    the CPU, resident memory, read from the process's peak where no earlier peak hides it, and otherwise
    sampled every half millisecond while `run()` works (torch releases the GIL inside its kernels)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    before, earlier_peak = resident_bytes(), peak_resident_bytes()
    sampled = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.0005):
            sampled[0] = max(sampled[0], resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    rise = max(sampled[0], resident_bytes()) - before
    if earlier_peak - before <= 0.02 * before:  # the process's own peak is this one: exact
        rise = max(rise, peak_resident_bytes() - before)
    return max(rise, 0)


def parse_budget(budget: str | None) -> int | None:
    """train.memory_budget or --memory-budget ("6GiB", "800MB") in bytes; None: no budget."""
    if budget is None:
        return None
    try:
        return parse_size(budget)
    except ValueError as exc:
        raise ConfigError(f"memory budget: {exc}") from None
