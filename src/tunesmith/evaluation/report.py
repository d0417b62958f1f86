"""Base vs tuned, side by side: a rich table for people and a dict for --json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunesmith.evaluation.metrics import HEADLINE, greater_is_better


def comparison(
    tuned: dict[str, Any],
    base: dict[str, Any] | None,
    base_description: str,
    headline: Sequence[str] = HEADLINE,
    examples: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The report: tuned and base metrics, their difference on the headline metrics, example outputs."""
    shown = [k for k in headline if k in tuned]
    out: dict[str, Any] = {"headline": shown, "tuned": tuned}
    if base is not None:
        out["base"] = base
        out["base_description"] = base_description
        out["delta"] = {k: tuned[k] - base[k] for k in shown if k in base}
    if examples:
        out["examples"] = list(examples)
    return out


def print_comparison(console: Console, report: dict[str, Any], title: str) -> None:
    tuned, base = report["tuned"], report.get("base")
    table = Table(title=title)
    table.add_column("metric")
    if base is not None:
        table.add_column("base", justify="right")
    table.add_column("tuned", justify="right")
    if base is not None:
        table.add_column("delta", justify="right")
    for key in report.get("headline", HEADLINE):
        row = [key]
        if base is not None:
            row.append(f"{base[key]:.3f}")
        row.append(f"{tuned[key]:.3f}")
        if base is not None:
            delta = report["delta"][key]
            better = delta < 0 if not greater_is_better(key) else delta > 0
            worse = delta > 0 if not greater_is_better(key) else delta < 0
            row.append(f"[{'green' if better else 'red' if worse else 'white'}]{delta:+.3f}[/]")
        table.add_row(*row)
    console.print(table)
    if "per_class" in tuned:
        _print_classes(console, tuned)
    if report.get("examples"):
        _print_examples(console, report["examples"])
    if base is not None:
        console.print(f"[dim]{report['base_description']}; {tuned['examples']} test examples[/]")


def _print_examples(console: Console, examples: Sequence[dict[str, Any]]) -> None:
    table = Table(title="example outputs", show_lines=True)
    columns = ["prompt", "reference", *(["base"] if "base" in examples[0] else []), "tuned"]
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in examples:
        table.add_row(*(_clip(row[c]) for c in columns))
    console.print(table)


def _clip(text: str, limit: int = 240) -> str:
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _print_classes(console: Console, tuned: dict[str, Any]) -> None:
    per_class = Table(title="tuned, per class")
    for col in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for name, scores in tuned["per_class"].items():
        per_class.add_row(
            name, *(f"{scores[k]:.3f}" for k in ("precision", "recall", "f1")), str(scores["support"])
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
