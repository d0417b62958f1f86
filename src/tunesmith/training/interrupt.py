"""Stopping a run without losing it: SIGTERM (what spot instances, SLURM and Kubernetes send before they take
the machine) and a first Ctrl-C ask the training loop to stop once the optimizer step in progress is done;
the loop then writes a checkpoint that holds its place in the epoch and raises errors.Interrupted, and
`--resume` continues from that very step. A second Ctrl-C stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any


class StopSignals:
    """While entered (from the main thread; elsewhere signals cannot be caught), SIGTERM and SIGINT set
    `received` instead of ending the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        if self.received is not None and self._previous and "LOCAL_RANK" in os.environ:
            # A torchrun worker on its way out after a stop: a SIGTERM now (the agent sends one to the workers
            # still running once one has exited) would cut the main process short of its message and its
            # lock's release. A second Ctrl-C still stops at once.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None and os.environ.get("LOCAL_RANK", "0") == "0":  # once per machine
            name = signal.Signals(signum).name
            print(
                f"tunesmith: {name}: stopping after this optimizer step to write a checkpoint"
                + (" (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""),
                file=sys.stderr,
                flush=True,
            )
        self.received = signum
