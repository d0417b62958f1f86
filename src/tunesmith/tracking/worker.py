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


class TrackerWorker:
    def __init__(self, trackers: list[Tracker], warn: Callable[[str], None]):
        self.trackers = trackers
        self.warn = warn
        self.failed: dict[str, str] = {}
        """Tracker name -> why it stopped."""
        self._queue: queue.Queue[tuple[str, tuple[Any, ...], Callable[..., None] | None] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._work, name="tunesmith-trackers", daemon=True)
        self._thread.start()

    def call(self, method: str, *args: Any, then: Callable[..., None] | None = None) -> None:
        """Queue `tracker.method(*args)` for every tracker still working; `then(name, result)` runs after
        each successful call, on the worker's thread."""
        self._queue.put((method, args, then))

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Let the queue drain (up to `wait_s`), then stop the thread."""
        self._queue.put(None)
        started = time.monotonic()
        self._thread.join(wait_s)
        if self._thread.is_alive():
            left = self._queue.qsize()
            self.warn(
                f"trackers: {left} updates not sent after {time.monotonic() - started:.0f} s; "
                "the run folder has everything (metrics.jsonl, run.json, eval.json)"
            )

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            method, args, then = item
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
