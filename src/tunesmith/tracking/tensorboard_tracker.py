"""TensorBoard: event files in RUN/tensorboard/, so `tensorboard --logdir runs/` shows every run's curves.

Scalars by step (train/, validation/, and the test, plan and forgetting numbers at the last step); the config,
the data check, plan vs measured and base vs tuned as text. A resumed run drops the events after the step it
resumes from (TensorBoard's purge_step), as metrics.jsonl does."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tunesmith.tracking import TRACKERS
from tunesmith.tracking.base import Tracker

FOLDER = "tensorboard"
"""RUN/FOLDER holds the event files."""


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    name = "tensorboard"
    needs = "tensorboard"

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("tensorboard") is not None

    def start(self, resume: bool) -> dict[str, Any]:
        self.resume = resume
        self.writer: Any = None  # opened at the first event: a resumed run purges from that step on
        return {"logdir": str(self.run_root / FOLDER)}

    def _writer(self, step: int) -> Any:
        """The event writer, opened at the first event. Resuming, that is the first step logged after the
        checkpoint, so events at it and after, from before the stop, are dropped (they are logged again)."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package: optional

            purge = step if self.resume else None
            self.writer = SummaryWriter(str(self.run_root / FOLDER), purge_step=purge, flush_secs=5)
        return self.writer

    def params(self, params: dict[str, str]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self._writer(0).add_text("config", "| key | value |\n|---|---|\n" + rows, 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        writer = self._writer(step)
        for name, value in values.items():
            writer.add_scalar(name, value, step)

    def text(self, name: str, markdown: str) -> None:
        self._writer(0).add_text(name, markdown, 0)

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status, 0)
            self.writer.close()

    @classmethod
    def record_serving(cls, root: Path, versions: dict[str, dict[str, Any]], state: dict[str, Any]) -> str:
        from torch.utils.tensorboard import SummaryWriter

        change = state["history"][-1]
        writer = SummaryWriter(str(Path(root) / FOLDER))
        said = f"now serving {change['version']} (was {change['from']}): {change['reason']}"
        writer.add_text("serving", said, len(state["history"]))
        writer.close()
        return f"TensorBoard: serving text in {Path(root) / FOLDER}"
