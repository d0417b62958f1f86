"""One background thread that feeds the trackers, in order, so that training never waits on one.

A tracker that raises (a server down, a disk full) is stopped at its first failure and said so once;
training and the other trackers go on. Closing waits for what is queued, up to a limit, then says what was
left unsent rather than holding the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from tunesmith.tracking.base import Tracker

CLOSE_WAIT_S = 60.0
"""Longest a finished run waits for its trackers to send what is queued (a slow server's artifacts)."""
GATHER_S = 1.0
"""Metrics queued within this long of each other go to a tracker as one request (one MLflow log_batch):
the curves stay live within seconds, and a run that logs every step costs a request a second, not a step."""


class TrackerWorker:
    def __init__(self, trackers: list[Tracker], warn: Callable[[str], None]):
        self.trackers = trackers
        self.warn = warn
        self.failed: dict[str, str] = {}
        """Tracker name -> why it stopped."""
        self.cpu_seconds: dict[str, float] = {}
        """CPU time this thread spent per kind of call (start, metrics_many, artifacts, ...)."""
        self._queue: queue.Queue[tuple[str, tuple[Any, ...], Callable[..., None] | None] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._work, name="tunesmith-trackers", daemon=True)
        self._thread.start()

    def call(self, method: str, *args: Any, then: Callable[..., None] | None = None) -> None:
        """Queue `tracker.method(*args)` for every tracker still working; `then(name, result)` runs after
        each successful call, on the worker's thread."""
        self._queue.put((method, args, then))

    def wait(self, wait_s: float) -> bool:
        """Block until everything queued so far has been sent (or has failed), up to `wait_s`: a run waits for
        its trackers to start before its first step, so their start (importing their libraries, creating a
        database) does not compete with training. False: still busy after `wait_s`."""
        reached = threading.Event()
        self._queue.put(("_reached", (reached,), None))
        return reached.wait(wait_s)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Let the queue drain (up to `wait_s`), then stop the thread."""
        self._queue.put(None)
        started = time.monotonic()
        self._thread.join(wait_s)
        if self._thread.is_alive():
            self.warn(
                f"trackers: still sending after {time.monotonic() - started:.0f} s, left unsent; the run folder "
                "has everything (metrics.jsonl, run.json, eval.json)"
            )

    def _work(self) -> None:
        pending: list[tuple[str, tuple[Any, ...], Callable[..., None] | None] | None] = []
        while True:
            item = pending.pop(0) if pending else self._queue.get()
            if item is None:
                return
            method, args, then = item
            if method == "_reached":
                args[0].set()
                continue
            if method == "metrics":
                method, args, pending = "metrics_many", (self._gather(args, pending),), pending
            self._send(method, args, then)

    def _gather(self, first: tuple[Any, ...], pending: list[Any]) -> list[tuple[dict[str, float], int]]:
        """The metrics call in hand and those queued within GATHER_S after it; anything else that comes is
        left in `pending`, in order, for after them."""
        batch = [first]
        deadline = time.monotonic() + GATHER_S
        while not pending and (left := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is not None and item[0] == "metrics":
                batch.append(item[1])
            else:
                pending.append(item)
        return [(values, step) for values, step in batch]

    def _send(self, method: str, args: tuple[Any, ...], then: Callable[..., None] | None) -> None:
        started = time.thread_time()
        try:
            self._send_each(method, args, then)
        finally:
            spent = time.thread_time() - started
            self.cpu_seconds[method] = self.cpu_seconds.get(method, 0.0) + spent

    def _send_each(self, method: str, args: tuple[Any, ...], then: Callable[..., None] | None) -> None:
        for tracker in self.trackers:
            if tracker.name in self.failed:
                continue
            try:
                result = getattr(tracker, method)(*args)
                if then is not None:
                    then(tracker.name, result)
            except Exception as exc:  # a tracker never stops training: said once, then left out
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
                self.failed[tracker.name] = reason
                self.warn(
                    f"tracker {tracker.name} stopped ({reason}); training goes on without it, and the run "
                    "folder has everything it would have sent"
                )
