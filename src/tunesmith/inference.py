"""Load a finished run (task, tokenizer, trained model) for eval, predict and, later, serving."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.config import RunConfig, load_config
from tunesmith.methods import METHODS, Method
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


@dataclass
class RunSpec:
    """What a run folder says, read without loading any weights: enough to refuse a request early."""

    run: RunFolder
    config: RunConfig
    task: Task
    method: Method

    def base_loader(self, device: str = "cpu") -> Callable[[str | None], torch.nn.Module]:
        """`load_base(None)`: the pretrained base as the method trains on it (quantized for QLoRA);
        `load_base(folder)`: a whole model folder."""
        base = resolve_model(self.config.model.name)

        def load_base(folder: str | None) -> torch.nn.Module:
            if folder is None:
                return self.task.load_model(base, **self.method.load_kwargs(device))
            return self.task.load_model(ResolvedModel(folder, True))

        return load_base


def read_run(path: Path) -> RunSpec:
    run = RunFolder(path)
    run.require_run()
    config = load_config(run.config)
    task = build_task(config.task, config.model)
    task.restore(run.read_json(run.task))
    record = json.loads((run.model / "tunesmith.json").read_text(encoding="utf-8"))
    if "task" in record:  # what the task learnt with the weights it holds (Task.model_state)
        task.restore_model_state(record["task"])
    return RunSpec(run, config, task, METHODS.get(config.method.name)(config.method))


def load_run(path: Path, device: str = "cpu") -> TrainedRun:
    from transformers import AutoTokenizer

    spec = read_run(path)
    tokenizer = AutoTokenizer.from_pretrained(spec.run.model)
    spec.task.use_tokenizer(tokenizer)
    model = spec.method.load(spec.run.model, spec.base_loader(device)).to(device).eval()
    spec.task.prepare_model(model)
    return TrainedRun(spec.run, spec.config, spec.task, tokenizer, model)
