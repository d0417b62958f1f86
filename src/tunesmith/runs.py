"""The run folder: one place for everything a run produced, and the rules that keep earlier results safe.

One writer at a time: every command that writes a run folder (train and its resume, tune, retune, rollback,
export, monitor) holds an exclusive lock on ROOT/.lock while it runs (`writing`). It is an OS lock
(flock), so the kernel drops it when its process ends, however it ends: no lock is ever left stale. A second
writer is refused at once with the holder's PID and command; readers (eval, predict, report, serve) never
take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError, WriteFailed, is_write_failure
from tunesmith.files import write_json_atomic


class RunFolder:
    """
    config.yaml                 resolved config (every default filled in)
    task.json                   what the task learnt from the data (e.g. the label list, in id order)
    data_check.json             the data check's report (errors none, else training would not start)
    run.json                    method, parameter counts, data sizes, timings
    metrics.jsonl               training and validation events
    model/                      the best weights (a peft adapter for LoRA, a whole model otherwise) + tokenizer
    baseline_probe.safetensors  the base model's linear head (see evaluation/baseline.py)
    eval.json                   base vs tuned on the test split
    checkpoints/                the latest resumable checkpoint
    trackers.json               with train.report_to: each tracker's state (MLflow's run id) and what sending cost
    tensorboard/                with tensorboard in train.report_to: the event files
    report.html                 `tunesmith report`, or a tracked run's end: the HTML report
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.task = self.root / "task.json"
        self.data_check = self.root / "data_check.json"
        self.summary = self.root / "run.json"
        self.metrics = self.root / "metrics.jsonl"
        self.model = self.root / "model"
        self.probe = self.root / "baseline_probe.safetensors"
        self.eval = self.root / "eval.json"
        self.checkpoints = self.root / "checkpoints"

    def is_run(self) -> bool:
        return self.config.is_file()

    def require_run(self) -> None:
        if not self.is_run():
            raise UserError(f"{self.root} is not a tunesmith run folder (no config.yaml)")
        if not (self.model / "tunesmith.json").is_file():
            raise UserError(f"{self.root} has no trained model yet (training did not reach a validation)")

    def create(self, overwrite: bool) -> None:
        """Make an empty run folder. An existing, non-empty one is only replaced when asked to."""
        self.check_creatable(overwrite)
        if self.root.is_dir():
            for child in _contents(self.root):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self.root.mkdir(parents=True, exist_ok=True)

    def check_creatable(self, overwrite: bool) -> None:
        """Raise what `create` would refuse, without touching anything."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root} exists and is not a folder")
        if self.root.is_dir() and _contents(self.root):
            if not overwrite:
                hint = "--resume to continue it, " if self.is_run() else ""
                raise UserError(
                    f"{self.root} is not empty; use {hint}--overwrite to replace it, or another --out"
                )
            if not self.is_run():
                raise UserError(f"{self.root} is not empty and is not a run folder; refusing to overwrite it")

    def write_json(self, path: Path, data: Any) -> None:
        write_json_atomic(path, data)

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))

    def holds(self) -> str:
        """Which model model/ holds: "tuned"; "base" when no fine-tuned checkpoint beat the base model on
        validation (train.keep=better); "start" when none beat the model of train.init_from it started from.
        A run still training, or from before train.keep, holds "tuned"."""
        return self.read_json(self.summary).get("holds", "tuned") if self.summary.is_file() else "tuned"

    def recover_model(self) -> None:
        """Undo a swap a kill cut in half (model/ already moved aside, the new one not yet in place): the
        model moved aside is the one the latest checkpoint knows as the best."""
        old = self.root / ".model.old"
        if not self.model.exists() and old.is_dir():
            os.replace(old, self.model)

    def replace_model(self, write: Any) -> None:
        """Write a new best model next to the old one, then swap, so a crash never leaves half a model."""
        fresh = self.root / ".model.new"
        old = self.root / ".model.old"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        try:
            write(fresh)
        except Exception as exc:
            shutil.rmtree(fresh, ignore_errors=True)
            if not is_write_failure(exc):
                raise
            raise WriteFailed(
                f"cannot write the new best model in {self.root} ({exc}); the previous one is kept"
            ) from None
        if self.model.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.model, old)
        os.replace(fresh, self.model)
        shutil.rmtree(old, ignore_errors=True)


LOCK = ".lock"
"""The lock file inside a folder being written; its text names the holder."""


def _contents(folder: Path) -> list[Path]:
    """What a folder holds besides its lock file."""
    return [p for p in folder.iterdir() if p.name != LOCK]


@contextmanager
def writing(folder: Path, command: str | None = None) -> Iterator[None]:
    """Hold `folder`'s writer lock (creating the folder) while the block runs; refused at once with the
    holder's PID and command when another process holds it. The lock file goes when the block ends, and so
    does a folder this call created that nothing else ended up in (a run refused before it wrote)."""
    folder = Path(folder)
    created = not folder.exists()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    handle = _lock(path, folder)
    try:
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        said = command or shlex.join(["tunesmith", *sys.argv[1:]])
        handle.write(json.dumps({"pid": os.getpid(), "command": said, "since": started}) + "\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: a process that opened it will find it gone
        handle.close()
        if created and not any(folder.iterdir()):
            with suppress(OSError):
                folder.rmdir()


def _lock(path: Path, folder: Path) -> Any:
    """The lock file, open and exclusively locked. A file the holder removed while this process waited to
    lock it is not the lock any more: then the new one is tried."""
    while True:
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise UserError(
                f"{folder} is being written by another process ({holder}); wait for it to end or stop it, "
                "then try again"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()


def _holder(text: str) -> str:
    try:
        who = json.loads(text)
        return f"PID {who['pid']}, `{who['command']}`, since {who['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not said which yet"
