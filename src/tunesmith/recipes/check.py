"""The data check as a verb of its own (`tunesmith check`) and as the gate `train` passes first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.data.checks.base import plural
from tunesmith.data.checks.gate import CheckReport, check_data
from tunesmith.data.readers import FileFormat
from tunesmith.errors import ConfigError, UserError
from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.models.catalog import ResolvedModel, resolve_model
from tunesmith.models.loader import load_model_config, load_tokenizer
from tunesmith.tasks import Task, build_task
from tunesmith.tasks.base import Splits

ERRORS_IN_MESSAGE = 10


@dataclass
class Checked:
    task: Task
    resolved: ResolvedModel
    tokenizer: Any
    report: CheckReport


def check_run_data(config: RunConfig, task: Task | None = None) -> Checked:
    """Every data file of the config checked with the model's tokenizer and max_length, as `train` reads them
    (`task`: the config's task, when the caller has built it already)."""
    data = config.data
    if data.train is None:
        raise ConfigError("no training data: give --data FILE or data.train in the config")
    task = task or build_task(config.task, config.model)
    resolved = resolve_model(config.model.name)
    tokenizer = load_tokenizer(resolved, config.model)
    task.use_tokenizer(tokenizer)
    files = {"train": data.train, "validation": data.validation, "test": data.test}
    from_data = config.model.max_length is None
    if from_data:  # measured against the longest input the model takes: what is cut there is lost for sure
        config.model.max_length = input_limit(tokenizer, load_model_config(resolved, config.model))
    report = check_data(
        task, files, FileFormat(data.format, data.delimiter), config.check, tokenizer_name=config.model.name
    )
    train_lengths = report.stats.get("lengths", {}).get("train")
    if from_data and train_lengths:
        config.model.max_length = min(config.model.max_length, max(train_lengths["p99"], MIN_CHOSEN_LENGTH))
        report.max_length, report.max_length_from_data = config.model.max_length, True
    return Checked(task, resolved, tokenizer, report)


def length_candidates(data_length: int) -> list[int]:
    """The lengths a run left to choose model.max_length tries: MIN_CHOSEN_LENGTH doubled until the data's
    length (the one that keeps 99% of training examples whole), and that length."""
    lengths, n = [], MIN_CHOSEN_LENGTH
    while n < data_length:
        lengths.append(n)
        n *= 2
    return [*lengths, data_length]


def choose_max_length(config: RunConfig, checked: Checked, splits: Splits) -> None:
    """When model.max_length came from the data and is past MIN_CHOSEN_LENGTH: the length of
    `length_candidates` at which the base model scores best on validation (the shorter on a tie), so a model
    that reads long texts worse than their beginning is not made to read them whole (bench/long_inputs.py:
    on long chats the probe scored 0.466 macro-F1 on the first 128 tokens, 0.282 on the first 512). Sets
    config.model.max_length and records every score in the report; nothing to do without a validation
    split or for a task that cannot score its base model."""
    report = checked.report
    if not report.max_length_from_data or not splits.validation or config.model.max_length is None:
        return
    candidates = length_candidates(config.model.max_length)
    if len(candidates) == 1:
        return
    metric, scores = config.train.metric or "", {}
    for n in candidates:
        metrics = checked.task.length_score(
            checked.resolved, splits.train, splits.validation, n, config.train.seed
        )
        if metrics is None or metric not in metrics:
            return
        scores[n] = float(metrics[metric])
    sign = 1 if greater_is_better(metric) else -1
    config.model.max_length = report.max_length = max(candidates, key=lambda n: (sign * scores[n], -n))
    report.length_scores = scores


MIN_CHOSEN_LENGTH = 128
"""model.max_length chosen from the data is at least this: a text to predict may be longer than the training
texts, and a higher limit costs training nothing (batches are padded to their own longest example)."""
FALLBACK_LIMIT = 512
"""The longest input assumed when the tokenizer does not say (BERT-style encoders take 512 positions)."""


def input_limit(tokenizer: Any, model_config: Any) -> int:
    """The longest input in tokens the model takes: the fewer of its tokenizer's limit (transformers sets a
    huge placeholder when it does not know) and its position embeddings."""
    limits = [
        value
        for value in (
            getattr(tokenizer, "model_max_length", None),
            getattr(model_config, "max_position_embeddings", None),
        )
        if isinstance(value, int) and 0 < value <= 1_000_000
    ]
    return min(limits) if limits else FALLBACK_LIMIT


def refuse_to_train(report: CheckReport, strict: bool) -> None:
    """Raise when training must not start: on any error, and with check.strict on any warning."""
    if not report.ok:
        lines = [f.message for f in report.errors[:ERRORS_IN_MESSAGE]]
        more = report.error_total - len(lines)
        tail = f"\n  … and {more} more" if more > 0 else ""
        raise UserError(
            f"the data check found {plural(report.error_total, 'error')}; training did not start:\n  "
            + "\n  ".join(lines)
            + tail
            + "\n(`tunesmith check` prints the full report)"
        )
    if strict and report.warnings:
        kinds = sorted({f.kind for f in report.warnings})
        raise UserError(
            f"check.strict is on and the data check found {plural(len(report.warnings), 'warning')} "
            f"({', '.join(kinds)}); training did not start. Fix the data, or accept a kind with "
            f"check.ignore=[{kinds[0]}]"
        )
