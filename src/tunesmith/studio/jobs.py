"""The studio's job queue: one job at a time, each a tunesmith command (`train`, `retune`, `monitor`) in its
own process, exactly as the command line runs it; the queue lives in SQLite (DIR/.studio/jobs.db), so a restarted studio shows the
truth: a job whose process is gone while it was marked running is marked `died`, and its run can be resumed.

    queued -> running -> finished | failed | interrupted (Cancel: SIGTERM, the run checkpoints first)
                      -> died (the studio or the machine went down under it)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    exit_code INTEGER,
    created REAL NOT NULL,
    started REAL,
    ended REAL
)
"""
ENDED = {0: "finished", 143: "interrupted", 130: "interrupted", -15: "interrupted", -2: "interrupted"}
"""Exit codes of `tunesmith train` (or the signal that ended it, negative) and the state they leave; anything
else: failed."""
ANSWERS = {"monitor": {1: "finished"}}
"""Exit codes that are a command's answer, not its failure: `tunesmith monitor` exits 1 when it found drift
(for cron); the Serve and watch page shows what it found."""


@dataclass(frozen=True)
class Job:
    id: int
    run: str
    args: list[str]
    state: str
    pid: int | None
    exit_code: int | None
    created: float
    started: float | None
    ended: float | None


class JobQueue:
    """Queued tunesmith commands (`args` starts with the verb) for runs under `root`, started one at a time
    by a thread of the studio's process; each job's output goes to DIR/.studio/logs/JOB.log (never into the
    run folder, which `train` creates itself)."""

    def __init__(self, root: Path, poll_s: float = 0.5):
        self.root = Path(root).resolve()
        self.home = self.root / ".studio"
        self.logs = self.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.db = self.home / "jobs.db"
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._verb = ""  # the running job's tunesmith command
        with self._connect() as db:
            db.execute(SCHEMA)
        self._mark_dead()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="tunesmith-studio-jobs", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db, timeout=10)
        db.row_factory = sqlite3.Row
        return db

    def _mark_dead(self) -> None:
        """Jobs marked running whose process is gone (the studio restarted): died."""
        for job in self.jobs(states=("running",)):
            if job.pid is None or not _alive(job.pid):
                self._set(job.id, state="died", ended=time.time())

    def submit(self, run: str, args: list[str]) -> int:
        with self._lock, self._connect() as db:
            cursor = db.execute(
                "INSERT INTO jobs (run, args, state, created) VALUES (?, ?, 'queued', ?)",
                (run, json.dumps(args), time.time()),
            )
            return int(cursor.lastrowid or 0)

    def jobs(self, states: tuple[str, ...] = (), run: str | None = None) -> list[Job]:
        query, params = "SELECT * FROM jobs WHERE 1=1", []
        if states:
            query += f" AND state IN ({', '.join('?' * len(states))})"
            params += list(states)
        if run is not None:
            query += " AND run = ?"
            params.append(run)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", params).fetchall()
        return [Job(**{**dict(r), "args": json.loads(r["args"])}) for r in rows]

    def last_job(self, run: str) -> Job | None:
        found = self.jobs(run=run)
        return found[-1] if found else None

    def cancel(self, job_id: int) -> bool:
        """A queued job is dropped; a running one gets SIGTERM (it checkpoints, then stops: interrupted)."""
        job = next((j for j in self.jobs() if j.id == job_id), None)
        if job is None:
            return False
        if job.state == "queued":
            self._set(job_id, state="cancelled", ended=time.time())
            return True
        if job.state == "running" and job.pid is not None:
            os.killpg(job.pid, signal.SIGTERM)
            return True
        return False

    def log_path(self, job_id: int) -> Path:
        return self.logs / f"{job_id}.log"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _set(self, job_id: int, **values: object) -> None:
        columns = ", ".join(f"{k} = ?" for k in values)
        with self._lock, self._connect() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", [*values.values(), job_id])

    def _work(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self._process is not None:
                code = self._process.poll()
                if code is None:
                    continue
                self._finish(code)
            queued = self.jobs(states=("queued",))
            if queued:
                self._start(queued[0])

    def _start(self, job: Job) -> None:
        log = self.log_path(job.id).open("wb")
        env = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", *job.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=env,
            start_new_session=True,  # Cancel signals the whole job; the studio's own Ctrl-C does not
        )
        log.close()
        self._running, self._verb = job.id, job.args[0] if job.args else ""
        self._set(job.id, state="running", pid=self._process.pid, started=time.time())

    def _finish(self, code: int) -> None:
        state = ANSWERS.get(self._verb, {}).get(code) or ENDED.get(code, "failed")
        self._set(self._running, state=state, exit_code=code, ended=time.time())
        self._process = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
