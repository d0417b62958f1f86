"""The benchmarks' way to run one side in a process of its own (so its peak RSS is its own):
tunesmith.processes.run_apart, with a child's error sent back as its traceback (and the benchmark stopped
with it) instead of a child that dies silently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunesmith.processes import run_apart


def _answer_or_error(fn: Callable[..., None], *args: Any) -> None:
    queue = args[-1]
    try:
        fn(*args)
    except BaseException:
        import traceback

        queue.put({"error": traceback.format_exc()})


def in_child(fn: Callable[..., None], *args: Any) -> Any:
    """`fn(*args, queue)` in a spawned process; what it put on the queue. A child's error ends the benchmark
    with the child's traceback; a child that dies without a word raises tunesmith.processes.ChildDied."""
    result = run_apart(_answer_or_error, fn, *args)
    if isinstance(result, dict) and "error" in result:
        raise SystemExit(result["error"])
    return result
