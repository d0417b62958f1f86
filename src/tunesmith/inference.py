"""Load a finished run (task, tokenizer, trained model) for eval, predict and, later, serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.config import RunConfig, load_config
from tunesmith.methods import METHODS
from tunesmith.models.catalog import ResolvedModel, resolve_model
from tunesmith.runs import RunFolder
from tunesmith.tasks import Task, build_task


@dataclass
class TrainedRun:
    run: RunFolder
    config: RunConfig
    task: Task
    tokenizer: Any
    model: torch.nn.Module

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


def load_run(path: Path, device: str = "cpu") -> TrainedRun:
    from transformers import AutoTokenizer

    run = RunFolder(path)
    run.require_run()
    config = load_config(run.config)
    task = build_task(config.task, config.model)
    task.restore(run.read_json(run.task))
    method = METHODS.get(config.method.name)(config.method)
    base = resolve_model(config.model.name)

    def load_base(folder: str | None) -> torch.nn.Module:
        return task.load_model(base if folder is None else ResolvedModel(folder, True))

    tokenizer = AutoTokenizer.from_pretrained(run.model)
    task.use_tokenizer(tokenizer)
    model = method.load(run.model, load_base).to(device).eval()
    task.prepare_model(model)
    return TrainedRun(run, config, task, tokenizer, model)
