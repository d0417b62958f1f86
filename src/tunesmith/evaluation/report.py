"""Base vs tuned, side by side: a rich table for people and a dict for --json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tunesmith.evaluation.metrics import HEADLINE


def comparison(tuned: dict[str, Any], base: dict[str, Any] | None, base_description: str) -> dict[str, Any]:
    out: dict[str, Any] = {"tuned": tuned}
    if base is not None:
        out["base"] = base
        out["base_description"] = base_description
        out["delta"] = {k: tuned[k] - base[k] for k in HEADLINE if k in tuned and k in base}
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
    for key in HEADLINE:
        row = [key]
        if base is not None:
            row.append(f"{base[key]:.3f}")
        row.append(f"{tuned[key]:.3f}")
        if base is not None:
            delta = report["delta"][key]
            row.append(f"[{'green' if delta > 0 else 'red' if delta < 0 else 'white'}]{delta:+.3f}[/]")
        table.add_row(*row)
    console.print(table)
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
    if base is not None:
        console.print(f"[dim]{report['base_description']}; {tuned['examples']} test examples[/]")
