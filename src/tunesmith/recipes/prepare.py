"""Everything a run needs before it touches a file: the config's method and task, the data check (refusing
on errors), the splits, and every example encoded. `train`, `plan`, `tune`, `monitor` and `retune` all start
here, so bad input fails the same way, before any side effect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.config import RunConfig
from tunesmith.data.checks.gate import CheckReport
from tunesmith.data.readers import FileFormat
from tunesmith.data.splits import stratified_split
from tunesmith.errors import ConfigError, UserError
from tunesmith.methods import METHODS, Method
from tunesmith.models.catalog import ResolvedModel
from tunesmith.recipes.check import check_run_data, choose_max_length, refuse_to_train
from tunesmith.tasks import Task, build_task
from tunesmith.tasks.base import Splits


def load_splits(task: Task, config: RunConfig) -> Splits:
    """Train/validation/test from files, or split off the training file (stratified, seeded)."""
    data = config.data
    if data.train is None:
        raise ConfigError("no training data: give --data FILE or data.train in the config")
    fmt = FileFormat(data.format, data.delimiter)
    train = task.read(data.train, fmt)
    notes: list[str] = []
    held_out: dict[str, list[Any]] = {}
    for split, path, fraction in (
        ("test", data.test, data.test_fraction),
        ("validation", data.validation, data.validation_fraction),
    ):
        if path is not None:
            held_out[split] = task.read(path, fmt)
            continue
        labels = [getattr(ex, "label", "") or "" for ex in train]
        train, held_out[split], stratified = stratified_split(train, labels, fraction, data.split_seed)
        if held_out[split]:
            how = "stratified" if stratified else "random (some classes too small to stratify)"
            notes.append(
                f"{split}: {len(held_out[split])} examples split off {Path(data.train).name} ({how}, seed {data.split_seed})"
            )
    return Splits(train, held_out["validation"], held_out["test"], notes)


@dataclass
class Prepared:
    config: RunConfig
    task: Task
    method: Method
    splits: Splits
    resolved: ResolvedModel
    tokenizer: Any
    train_features: list[dict[str, Any]]
    val_features: list[dict[str, Any]]
    report: CheckReport


def prepare(config: RunConfig) -> Prepared:
    """All input checks: plugins, the data check (every error at once; training refuses on any, and on
    warnings with check.strict), model, and encoding every example. Touches no file."""
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda, but torch sees no CUDA GPU here; use train.device=auto or cpu")
    method = METHODS.get(config.method.name)(config.method)
    task = build_task(config.task, config.model)
    if (why := method.incompatibility(task)) is not None:
        raise ConfigError(
            f"method {method.name} cannot fine-tune the {task.name} task on {config.model.name}: {why}"
        )
    checked = check_run_data(config, task)
    refuse_to_train(checked.report, config.check.strict)
    task, tokenizer = checked.task, checked.tokenizer
    splits = load_splits(task, config)
    task.fit(splits.train, {"validation": splits.validation, "test": splits.test})
    choose_max_length(config, checked, splits)
    train_features = task.encode(splits.train, tokenizer)
    val_features = task.encode(splits.validation, tokenizer) if splits.validation else []
    if splits.test:
        task.encode(splits.test, tokenizer)  # fails now, not after training, if a test example cannot encode
    return Prepared(
        config,
        task,
        method,
        splits,
        checked.resolved,
        tokenizer,
        train_features,
        val_features,
        checked.report,
    )


def absolute_data_paths(config: RunConfig) -> RunConfig:
    """The data files by absolute path, as the run folder's config records them (so that a resume or a
    re-tune started from another directory finds them)."""
    data = config.data.model_copy(
        update={
            k: Path(v).resolve()
            for k in ("train", "validation", "test")
            if (v := getattr(config.data, k)) is not None
        }
    )
    return config.model_copy(update={"data": data})
