"""What the loop tells the user: a progress bar with loss and samples/s, and metrics.jsonl on disk."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class MetricsLog:
    """Appends one JSON object per event (train step summary, validation) to metrics.jsonl, and hands each to
    the listeners (the run's trackers) once it is on disk."""

    def __init__(self, path: Path, listeners: Sequence[Callable[[dict[str, Any]], None]] = ()):
        self.path = path
        self.listeners = list(listeners)

    def truncate_after(self, step: int) -> None:
        """Drop records newer than a checkpoint we resume from, so a resumed log has no duplicates."""
        if not self.path.is_file():
            return
        keep = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        for listener in self.listeners:
            listener(record)


class TrainProgress:
    """A rich progress bar over optimizer steps showing the running loss and samples/s."""

    def __init__(self, console: Console, total_steps: int, start_step: int):
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[sps]:.1f} samples/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task(
            "train", total=total_steps, completed=start_step, epoch=0, loss=0.0, sps=0.0
        )
        self.started = time.perf_counter()
        self.samples = 0

    def __enter__(self) -> TrainProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def advance(self, epoch: int, loss: float, samples: int) -> None:
        self.samples += samples
        self.bar.update(self.task, advance=1, epoch=epoch + 1, loss=loss, sps=self.samples_per_second)

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(time.perf_counter() - self.started, 1e-9)

    def say(self, text: str) -> None:
        self.bar.console.print(text, markup=False)  # plain text: "[best]" is not a style
