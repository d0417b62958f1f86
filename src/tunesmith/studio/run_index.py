"""The runs under the studio's folder, as the Runs page lists them: what each is and how it stands.

A run folder is any folder with a config.yaml (at most DEPTH levels down; a deployed run's versions/ are
its own business). Each row is read from what the folder recorded (run.json, eval.json, the writer's lock)
and kept until one of those files changes, so a page over hundreds of runs reads only what moved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.runs import LOCK, RunFolder

DEPTH = 2
"""How deep under the studio's folder run folders are looked for (runs/demo, runs/team/demo)."""
STATUSES = ("running", "finished", "interrupted", "failed")


@dataclass(frozen=True)
class RunRow:
    name: str
    """The path under the studio's folder, with '/' (what URLs name the run by)."""
    task: str
    model: str
    method: str
    status: str
    """running (a process holds its lock), finished (run.json written), interrupted (stopped with a checkpoint
    to resume from), failed (stopped before a checkpoint, or its job failed)."""
    metric: str | None
    tuned: float | None
    base: float | None
    gain: float | None
    gain_low: float | None
    gain_high: float | None
    holds: str
    started: float
    """When its config was written (seconds since the epoch)."""

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def holder_alive(lock: Path) -> bool:
    """Whether the process named in a run's lock file is alive (the lock file goes when its writer ends; one
    left by a killed process names a dead PID). Read only: taking the lock would refuse a writer starting."""
    try:
        pid = int(json.loads(lock.read_text(encoding="utf-8"))["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _stamp(run: RunFolder) -> tuple[int, ...]:
    out = []
    for path in (run.config, run.summary, run.eval, run.root / LOCK, run.checkpoints):
        try:
            out.append(path.stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_row(run: RunFolder, name: str, failed_job: bool = False) -> RunRow:
    summary = _json(run.summary)
    if summary:
        task, model, method = summary.get("task"), summary.get("model"), summary.get("method")
    else:  # still training: its resolved config says what it is
        try:
            config = yaml.load(
                run.config.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            )
        except (OSError, yaml.YAMLError):
            config = {}
        config = config if isinstance(config, dict) else {}
        task = (config.get("task") or {}).get("name")
        model = (config.get("model") or {}).get("name")
        method = (config.get("method") or {}).get("name")
    report = _json(run.eval)
    metric = (report.get("headline") or [None])[0]
    metric = next((m for m in report.get("headline", []) if "f1" in m), metric)
    interval = (report.get("interval") or {}).get(metric) or {}
    return RunRow(
        name=name,
        task=str(task or "?"),
        model=str(model or "?"),
        method=str(method or "?"),
        status=_status(run, bool(summary), failed_job),
        metric=metric,
        tuned=(report.get("tuned") or {}).get(metric),
        base=(report.get("base") or {}).get(metric),
        gain=(report.get("delta") or {}).get(metric),
        gain_low=interval.get("low"),
        gain_high=interval.get("high"),
        holds=str(summary.get("holds", "tuned")),
        started=run.config.stat().st_mtime if run.config.exists() else 0.0,
    )


def _status(run: RunFolder, finished: bool, failed_job: bool) -> str:
    if holder_alive(run.root / LOCK):
        return "running"
    if finished:
        return "finished"
    if failed_job:
        return "failed"
    return "interrupted" if any(run.checkpoints.glob("*")) else "failed"


class RunIndex:
    """The rows of every run under `root`, re-read only where a file changed."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._rows: dict[Path, tuple[tuple[int, ...], RunRow]] = {}

    def folders(self) -> list[Path]:
        found = []
        level = [self.root]
        for _ in range(DEPTH):
            below = []
            for folder in level:
                try:
                    children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
                except OSError:
                    continue
                for child in children:
                    (found if (child / "config.yaml").is_file() else below).append(child)
            level = below
        return found

    def rows(self, failed_jobs: set[str] = frozenset()) -> list[RunRow]:
        """Newest first. `failed_jobs`: names whose last studio job failed."""
        rows = []
        seen = set()
        for folder in self.folders():
            run = RunFolder(folder)
            name = folder.relative_to(self.root).as_posix()
            stamp = (*_stamp(run), name in failed_jobs)
            cached = self._rows.get(folder)
            if cached is None or cached[0] != stamp:
                cached = (stamp, read_row(run, name, name in failed_jobs))
                self._rows[folder] = cached
            rows.append(cached[1])
            seen.add(folder)
        for gone in set(self._rows) - seen:
            del self._rows[gone]
        return sorted(rows, key=lambda r: r.started, reverse=True)
