"""The run folder: one place for everything a run produced, and the rules that keep earlier results safe."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.training.checkpoint import write_json_atomic


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
        if self.root.is_dir() and any(self.root.iterdir()):
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def check_creatable(self, overwrite: bool) -> None:
        """Raise what `create` would refuse, without touching anything."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root} exists and is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()):
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

    def replace_model(self, write: Any) -> None:
        """Write a new best model next to the old one, then swap, so a crash never leaves half a model."""
        fresh = self.root / ".model.new"
        old = self.root / ".model.old"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        write(fresh)
        if self.model.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.model, old)
        os.replace(fresh, self.model)
        shutil.rmtree(old, ignore_errors=True)
