"""Run every check over the data files in one streaming pass and gather the report.

Each split is read through the task's own reader, so the check sees exactly what training would: a record
the reader refuses is an error with its file and line, and reading goes on to find the others. What could be
read is measured in the model's tokens (when a tokenizer is given) and fed to each registered check. Only
counters, hashes and a few quoted lines are kept, so memory does not grow with the text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tunesmith.data.checks.base import Finding
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.readers import NO_ROWS, FileFormat, delimiter_note
from tunesmith.errors import DataError
from tunesmith.sections import CheckConfig

SPLITS = ("train", "validation", "test")
ERRORS_KEPT = 20
"""Errors of one kind listed in full; past that they are only counted."""
BATCH = 512


@dataclass
class CheckReport:
    task: str
    tokenizer: str | None
    max_length: int | None
    max_length_from_data: bool = False
    """model.max_length was left empty and chosen from the training lengths (recipes/check.py); the
    truncation warnings then count what the model's own input limit cuts."""
    length_scores: dict[int, float] = field(default_factory=dict)
    """When the data's length was past MIN_CHOSEN_LENGTH: the base model's validation score reading the first
    N tokens, for each length N tried; max_length is the best of them (recipes/check.choose_max_length)."""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[Finding] = field(default_factory=list)
    error_counts: dict[str, int] = field(default_factory=dict)
    """Errors per kind, all of them (`errors` lists the first ERRORS_KEPT of each)."""
    warnings: list[Finding] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """Warning kinds found but silenced by check.ignore."""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def error_total(self) -> int:
        return sum(self.error_counts.values())

    @property
    def ok(self) -> bool:
        return self.error_total == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "task": self.task,
            "tokenizer": self.tokenizer,
            "max_length": self.max_length,
            "max_length_from_data": self.max_length_from_data,
            "length_scores": self.length_scores,
            "files": self.files,
            "error_total": self.error_total,
            "error_counts": self.error_counts,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
            "ignored": self.ignored,
            "stats": self.stats,
        }


class _ErrorLog:
    """Collects errors as readers report them: the first ERRORS_KEPT of each kind in full, all counted."""

    def __init__(self) -> None:
        self.kept: list[Finding] = []
        self.counts: Counter[str] = Counter()

    def __call__(self, error: DataError) -> None:
        self.counts[error.kind] += 1
        if self.counts[error.kind] <= ERRORS_KEPT:
            where = [f"{error.path.name} {error.unit} {error.line}"] if error.line is not None else []
            self.kept.append(Finding("error", error.kind, str(error), where))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def check_data(
    task: Any,
    files: dict[str, Path | None],
    fmt: str | FileFormat,
    cfg: CheckConfig,
    *,
    tokenizer_name: str | None,
) -> CheckReport:
    """Check the files of each split (train first). `task` has its tokenizer set when `tokenizer_name` is
    given; without one, lengths in tokens are not measured."""
    log = _ErrorLog()
    checks = {name: CHECKS.get(name)(cfg) for name in CHECKS.names()}
    report = CheckReport(task.name, tokenizer_name, task.model_cfg.max_length if tokenizer_name else None)
    for split in SPLITS:
        path = files.get(split)
        if path is None:
            continue
        before, usable = log.total, 0
        try:
            for batch in _batches(task.examples(Path(path), fmt, log), BATCH):
                counts = task.measure(batch) if tokenizer_name else [None] * len(batch)
                for example, count in zip(batch, counts, strict=True):
                    view = task.view(example)
                    if count is not None and count.problem:
                        log(DataError(view.path, view.line, count.problem, view.unit, count.problem_kind))
                        continue
                    view.tokens = count
                    usable += 1
                    for check in checks.values():
                        check.add(split, view)
        except DataError as exc:  # the rest of the file cannot be read
            log(exc)
        if usable == 0 and log.total == before:
            log(DataError(Path(path), None, NO_ROWS, kind="no_rows"))
        report.files[split] = {"path": str(path), "examples": usable, "errors": log.total - before}
        if note := delimiter_note(Path(path), fmt):
            report.files[split]["read_as"] = note
    for name, check in checks.items():
        for finding in check.findings():
            if finding.level == "error":
                log.counts[finding.kind] += finding.count
                log.kept.append(finding)
            elif finding.kind in cfg.ignore:
                report.ignored.append(finding.kind)
            else:
                report.warnings.append(finding)
        if stats := check.stats():
            report.stats[name] = stats
    report.errors, report.error_counts = log.kept, dict(log.counts)
    report.ignored = sorted(set(report.ignored))
    return report
