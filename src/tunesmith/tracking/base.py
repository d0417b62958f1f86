"""What a tracker is: where a run's params, metrics by step, texts and files go, in one tool's terms."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from tunesmith.sections import TrainConfig

STATUSES = ("finished", "failed", "interrupted")
"""How a run ends, as a tracker is told (each maps it to its own words)."""


class Tracker(ABC):
    """One tool a run reports to. Each call may raise: the worker (tracking/worker.py) stops a tracker at
    its first failure and says so once; none of them is ever called from the training loop's thread."""

    name: ClassVar[str]
    needs: ClassVar[str]
    """The pip requirement the tracker needs, named in the error when it is not installed."""

    def __init__(self, run_root: Path, cfg: TrainConfig, saved: dict[str, Any]):
        self.run_root = Path(run_root)
        self.cfg = cfg
        self.saved = saved
        """What this tracker kept in RUN/trackers.json when the run started (a resumed run carries on)."""

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether its library is installed (checked before the run folder is touched)."""

    @abstractmethod
    def start(self, resume: bool) -> dict[str, Any]:
        """Open (or, resuming, reopen) the run in the tool; returns what to keep in RUN/trackers.json."""

    @abstractmethod
    def params(self, params: dict[str, str]) -> None: ...

    @abstractmethod
    def metrics(self, values: dict[str, float], step: int) -> None: ...

    def metrics_many(self, batches: list[tuple[dict[str, float], int]]) -> None:
        """Several steps' metrics at once (the worker gathers what comes within a second); one request where
        the tool takes one."""
        for values, step in batches:
            self.metrics(values, step)

    @abstractmethod
    def text(self, name: str, markdown: str) -> None: ...

    def artifacts(self, paths: list[Path]) -> None:
        """The run's files (a folder goes whole); a tool without files keeps none."""

    @abstractmethod
    def finish(self, status: str) -> None:
        """The run ended with one of STATUSES; flush and close."""

    @classmethod
    def record_serving(cls, root: Path, versions: dict[str, dict[str, Any]], state: dict[str, Any]) -> str:
        """A promotion or rollback of the deployed run at `root`: `versions` maps each version (v1, v2, ...)
        to what it kept in its trackers.json, `state` is serving.json. Returns what was recorded, in words
        (empty: this tool records nothing)."""
        return ""
