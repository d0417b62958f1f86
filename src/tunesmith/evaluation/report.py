"""Base vs tuned, side by side: a rich table for people and a dict for --json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunesmith.evaluation.bootstrap import LEVEL, Interval
from tunesmith.evaluation.forgetting import describe
from tunesmith.evaluation.metrics import HEADLINE, greater_is_better

HOLDS_BASE = (
    "this run holds the base model: no fine-tuned checkpoint clearly beat it on validation, so the run kept the model "
    "training started from (train.keep=better), and it predicts, serves, exports and re-tunes like any run. "
    "The tuned column is that model; train.keep=tuned keeps the fine-tuned weights instead"
)
HOLDS_START = "this run holds the model it started from (train.init_from): no fine-tuned checkpoint clearly beat it on validation"
HOLDS = {"base": HOLDS_BASE, "start": HOLDS_START}
"""What a report says when a run holds another model than its fine-tuned one (RunFolder.holds)."""


def comparison(
    tuned: dict[str, Any],
    base: dict[str, Any] | None,
    base_description: str,
    headline: Sequence[str] = HEADLINE,
    examples: Sequence[dict[str, Any]] = (),
    intervals: Mapping[str, Interval] | None = None,
    holds: str = "tuned",
) -> dict[str, Any]:
    """The report: tuned and base metrics, their difference on the headline metrics (with its bootstrap
    interval where the metric has one), example outputs; `holds`: which model the run holds (RunFolder)."""
    shown = [k for k in headline if k in tuned]
    out: dict[str, Any] = {"headline": shown, "tuned": tuned, "holds": holds}
    if base is not None:
        out["base"] = base
        out["base_description"] = base_description
        out["delta"] = {k: tuned[k] - base[k] for k in shown if k in base}
        out["interval"] = {k: intervals[k].as_json() for k in shown if intervals and k in intervals}
    if examples:
        out["examples"] = list(examples)
    return out


@dataclass(frozen=True)
class MetricRow:
    """One headline metric of a report, for any renderer (console table, HTML page)."""

    metric: str
    tuned: float
    base: float | None
    delta: float | None
    verdict: str
    """better, worse or same (by the metric's direction); same without a base."""
    interval: str
    """"[low, high]" of the bootstrap interval, or empty."""
    significant: bool
    """The interval excludes 0."""


def metric_rows(report: Mapping[str, Any]) -> list[MetricRow]:
    tuned, base = report["tuned"], report.get("base")
    intervals = report.get("interval") or {}
    rows = []
    for key in report.get("headline", HEADLINE):
        delta = report["delta"][key] if base is not None else None
        verdict = "same"
        if delta:
            verdict = "better" if (delta > 0) == greater_is_better(key) else "worse"
        interval = intervals.get(key)
        rows.append(
            MetricRow(
                key,
                tuned[key],
                base[key] if base is not None else None,
                delta,
                verdict,
                f"[{interval['low']:+.3f}, {interval['high']:+.3f}]" if interval else "",
                bool(interval and interval["excludes_zero"]),
            )
        )
    return rows


def print_comparison(console: Console, report: dict[str, Any], title: str) -> None:
    tuned, base = report["tuned"], report.get("base")
    if report.get("holds") in HOLDS:
        console.print(f"[bold yellow]{HOLDS[report['holds']]}[/]")
    table = Table(title=title)
    table.add_column("metric")
    if base is not None:
        table.add_column("base", justify="right")
    table.add_column("tuned", justify="right")
    if base is not None:
        table.add_column("delta", justify="right")
    intervals = report.get("interval") or {}
    if intervals:
        table.add_column(f"{100 * LEVEL:.0f}% interval", justify="right")
    colours = {"better": "green", "worse": "red", "same": "white"}
    for r in metric_rows(report):
        row = [r.metric]
        if r.base is not None:
            row.append(f"{r.base:.3f}")
        row.append(f"{r.tuned:.3f}")
        if r.delta is not None:
            row.append(f"[{colours[r.verdict]}]{r.delta:+.3f}[/]")
        if intervals:
            row.append(r.interval + (" *" if r.significant else "  ") if r.interval else "")
        table.add_row(*row)
    console.print(table)
    if "per_class" in tuned:
        _print_classes(console, tuned)
        if tuned.get("never_predicted"):
            console.print(
                f"[yellow]warning: the tuned model never predicts {', '.join(tuned['never_predicted'])} "
                "although the test examples have it; a rare class needs more examples, or "
                "task.class_weight=balanced[/]"
            )
    if report.get("examples"):
        _print_examples(console, report["examples"])
    if base is not None:
        console.print(f"[dim]{report['base_description']}; {tuned['examples']} test examples[/]")
    if intervals:
        console.print(
            f"[dim]interval: {100 * LEVEL:.0f}% paired bootstrap of tuned - base over the test examples; * where "
            "it excludes 0, i.e. the difference is unlikely to be chance[/]"
        )
    if report.get("forgetting"):
        _print_forgetting(console, report["forgetting"])


def _print_forgetting(console: Console, section: dict[str, Any]) -> None:
    console.print(
        "[bold]forgetting[/] (general ability, base vs tuned, on the reference shipped with tunesmith)"
    )
    for line in describe(section):
        console.print(f"  {line}")
    if section.get("prompts"):
        _print_texts(console, "general prompts", section["prompts"], PROMPT_COLUMNS)
    for warning in section.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/]")


def _print_examples(console: Console, examples: Sequence[dict[str, Any]]) -> None:
    _print_texts(console, "example outputs", examples, EXAMPLE_COLUMNS)


def _print_texts(
    console: Console, title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> None:
    shown, cells = text_table(rows, columns, limit=240)
    table = Table(title=title, show_lines=True)
    for col in shown:
        table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*map(escape, row))
    console.print(table)


EXAMPLE_COLUMNS = ("prompt", "reference", "base", "tuned")
"""The example-outputs table: input, expected output, and the base and tuned models' outputs."""
PROMPT_COLUMNS = ("prompt", "base", "tuned")
"""The general-prompts table of the forgetting section."""


def text_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], limit: int
) -> tuple[list[str], list[list[str]]]:
    """The `columns` the rows have, and each row's texts clipped to `limit` characters: the example-outputs and general-prompts tables, for the console and the HTML report alike."""
    shown = [c for c in columns if c in rows[0]]
    return shown, [[clip(row.get(c), limit) for c in shown] for row in rows]


def clip(text: Any, limit: int) -> str:
    """`text` as a string of at most `limit` characters, an ellipsis marking a cut."""
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_classes(console: Console, tuned: dict[str, Any]) -> None:
    per_class = Table(title="tuned, per class")
    for col in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    never = set(tuned.get("never_predicted", ()))
    for name, scores in tuned["per_class"].items():
        per_class.add_row(
            name + (" (never predicted)" if name in never else ""),
            *(f"{scores[k]:.3f}" for k in ("precision", "recall", "f1")),
            str(scores["support"]),
        )
    console.print(per_class)
    names = list(tuned["per_class"])
    if len(names) <= 20:
        matrix = Table(title="tuned, confusion matrix (rows: true label, columns: predicted)")
        matrix.add_column("")
        for name in names:
            matrix.add_column(name[:10], justify="right")
        for r, (name, row) in enumerate(zip(names, tuned["confusion_matrix"], strict=True)):
            matrix.add_row(name, *(f"[bold]{n}[/]" if c == r else str(n) for c, n in enumerate(row)))
        console.print(matrix)
