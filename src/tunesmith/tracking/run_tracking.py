"""What a training run sends its trackers, and when: the one object the finetune recipe talks to.

    RUN/trackers.json   what each tracker needs to carry on after a resume (MLflow's run id, its URI)

With `train.report_to` empty it does nothing and starts no thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig, load_config
from tunesmith.errors import ConfigError
from tunesmith.files import write_json_atomic
from tunesmith.sections import TrainConfig
from tunesmith.tracking import TRACKERS
from tunesmith.tracking.base import Tracker
from tunesmith.tracking.records import (
    data_check_metrics,
    data_check_text,
    evaluation_metrics,
    evaluation_text,
    event_metrics,
    flat_params,
    plan_metrics,
    plan_text,
)
from tunesmith.tracking.worker import TrackerWorker
from tunesmith.versions import Deployment

TRACKERS_FILE = "trackers.json"
WORKER = "worker"
"""The key of trackers.json that says what sending cost and which trackers failed (not a tracker's name)."""
START_WAIT_S = 30.0
"""Longest a run waits for its trackers to start before training anyway (they go on starting beside it).
Starting them first keeps their imports and a new database's tables off the training's CPU: measured on
the demo, a start beside the first steps cost it 4 s of its 28 s of training (bench/trackers.py)."""


def tracker_classes(cfg: TrainConfig) -> list[type[Tracker]]:
    """The trackers train.report_to names; an unknown or uninstalled one is refused here, before anything is
    written, with what to install."""
    classes = []
    for name in dict.fromkeys(cfg.report_to):
        cls = TRACKERS.get(name)
        if not cls.available():
            raise ConfigError(
                f"train.report_to: {name} needs the {cls.needs} package; install it (pip install "
                f"'tunesmith[trackers]') or leave {name} out"
            )
        classes.append(cls)
    return classes


def saved_states(root: Path) -> dict[str, Any]:
    """RUN/trackers.json, or nothing where no tracker ever started for the run."""
    path = Path(root) / TRACKERS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class RunTracking:
    """Sends one run to every tracker of train.report_to, off the training thread (tracking/worker.py)."""

    def __init__(
        self, root: Path, config: RunConfig, resume: bool, warn: Callable[[str], None], active: bool = True
    ):
        """`active` False (the other processes of a distributed run): sends nothing."""
        self.root, self.resume = Path(root), resume
        saved = saved_states(self.root)
        classes = tracker_classes(config.train) if active else []
        trackers = [cls(self.root, config.train, saved.get(cls.name, {})) for cls in classes]
        self._states = saved
        self._lock = threading.Lock()
        self.worker = TrackerWorker(trackers, warn) if trackers else None
        if self.worker is not None:
            self.worker.call("start", resume, then=self._keep)
            if not resume:  # a resumed run sent its config and data check when it started
                self.worker.call("params", flat_params(config.model_dump(mode="json")))

    @property
    def active(self) -> bool:
        return self.worker is not None

    def _keep(self, name: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._states[name] = state
            write_json_atomic(self.root / TRACKERS_FILE, self._states)

    def ready(self, wait_s: float = START_WAIT_S) -> None:
        """Wait (up to `wait_s`) until the trackers have started and taken the config and the data check, so
        that their start does not compete with the first training steps."""
        if self.worker is not None:
            self.worker.wait(wait_s)

    def _call(self, method: str, *args: Any) -> None:
        if self.worker is not None:
            self.worker.call(method, *args)

    def data_checked(self, check: dict[str, Any]) -> None:
        if not self.resume:
            self._call("metrics", data_check_metrics(check), 0)
            self._call("text", "data_check", data_check_text(check))

    def record(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl event, as the loop writes it."""
        if (found := event_metrics(record)) is not None and found[0]:
            self._call("metrics", *found)

    def trained(self, summary: dict[str, Any]) -> None:
        self._call("metrics", plan_metrics(summary), summary["optimizer_steps"])
        self._call("text", "plan_vs_measured", plan_text(summary))

    def evaluated(self, report: dict[str, Any], step: int) -> None:
        self._call("metrics", evaluation_metrics(report), step)
        self._call("text", "base_vs_tuned", evaluation_text(report))

    def files(self, paths: list[Path]) -> None:
        self._call("artifacts", [p for p in paths if p.exists()])

    def close(self, status: str) -> None:
        """Tell the trackers how the run ended, wait for them (up to a minute), and keep in trackers.json
        what sending cost this process ("worker": CPU seconds per kind of call) and which trackers failed."""
        if self.worker is not None:
            self._call("finish", status)
            self.worker.close()
            cost = {k: round(v, 3) for k, v in self.worker.cpu_seconds.items()}
            self._keep(WORKER, {"cpu_seconds": cost, "failed": dict(self.worker.failed)})


def record_serving(deployment: Deployment, warn: Callable[[str], None]) -> list[str]:
    """After a promotion or rollback: each tracker of the now serving version's train.report_to records which
    version serves (MLflow: model versions and the "serving" alias). A tracker that fails warns; the change
    of version stands either way. Returns what was recorded, in words."""
    state = deployment.state()
    cfg = load_config(deployment.current_folder() / "config.yaml").train
    said = []
    for name in dict.fromkeys(cfg.report_to):
        cls = TRACKERS.get(name)
        if not cls.available():
            continue
        versions = {v: saved_states(deployment.folder(v)).get(name, {}) for v in deployment.versions()}
        try:
            if line := cls.record_serving(deployment.root, versions, state):
                said.append(line)
        except Exception as exc:  # the new version serves whatever a tracker says
            warn(f"tracker {name} did not record the change of version ({type(exc).__name__}: {exc})")
    return said
