"""One function, run in a fresh spawned process, with its one answer sent back: how the planner calibrates
each method (and the benchmarks measure each run) on a process of its own, so the memory one method leaves
behind never counts against the next."""

from __future__ import annotations

import multiprocessing
import os
import queue as queues
from collections.abc import Callable
from typing import Any


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it, else all of them)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class ChildDied(RuntimeError):
    """The process ended (crashed, or was killed, e.g. for memory) without answering."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the process ended without an answer (exit code {exitcode})")
        self.exitcode = exitcode


def run_apart(target: Callable[..., None], *args: Any, poll_seconds: float = 2.0) -> Any:
    """`target(*args, queue)` in a spawned process; returns what it put on the queue. A child that dies
    without answering raises ChildDied instead of leaving the caller waiting forever. `target` must be
    importable (a module-level function)."""
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=target, args=(*args, answers))
    child.start()
    try:
        while True:
            try:
                return answers.get(timeout=poll_seconds)
            except queues.Empty:
                if not child.is_alive():
                    try:  # an answer sent just before the exit may still be in the pipe
                        return answers.get(timeout=1.0)
                    except queues.Empty:
                        raise ChildDied(child.exitcode) from None
    finally:
        child.join()
