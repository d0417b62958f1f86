"""The data check report in the terminal: one table of the splits, then every error and warning on its own
line (never wrapped mid-message, so file and line stay searchable)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunesmith.data.checks.base import plural
from tunesmith.data.checks.gate import ERRORS_KEPT, CheckReport

LABELS_SHOWN = 12


def _length_source(report: CheckReport) -> str:
    if not report.max_length_from_data:
        return ""
    if not report.length_scores:
        return " (from the data: 99% of training examples whole)"
    tried = ", ".join(f"{n} {score:.3f}" for n, score in report.length_scores.items())
    return (
        f" (from the data: the base model read the first N tokens best at {report.max_length} on validation;"
        f" tried {tried}; the longest keeps 99% of training examples whole)"
    )


def print_report(console: Console, report: CheckReport) -> None:
    tokens = (
        f"tokens of {report.tokenizer}, max_length {report.max_length}{_length_source(report)}"
        if report.tokenizer
        else "tokens not measured"
    )
    console.print(f"[italic]data check: {report.task} ({tokens})[/]", soft_wrap=True)  # wider than the table
    table = _splits_table(report)
    console.print(table)
    for split, info in report.files.items():
        if "read_as" in info:
            console.print(
                f"{split} ({escape(Path(info['path']).name)}): {escape(info['read_as'])}", soft_wrap=True
            )
    labels = report.stats.get("labels", {}).get("train")
    if labels:
        shown = list(labels.items())[:LABELS_SHOWN]
        more = f"  … {len(labels) - LABELS_SHOWN} more" if len(labels) > LABELS_SHOWN else ""
        text = "  ".join(f"{escape(name)} {v['count']:,} ({v['share']})" for name, v in shown)
        console.print(f"[bold]labels (train)[/]: {text}{more}", soft_wrap=True)
    _print_findings(console, report)
    if report.ignored:
        console.print(f"[dim]ignored (check.ignore): {', '.join(report.ignored)}[/]")
    if not report.ok:
        verdict = f"[bold red]{plural(report.error_total, 'error')}[/]: fix them before training"
    elif report.warnings:
        verdict = (
            f"[bold yellow]{plural(len(report.warnings), 'warning')}[/]: training can start; read them first"
        )
    else:
        verdict = "[bold green]clean[/]: no errors, no warnings"
    console.print(f"result: {verdict}")


def _splits_table(report: CheckReport) -> Table:
    """One row per split: examples, errors, token lengths, examples cut at max_length, near-duplicates."""
    table = Table()
    for column in ("split", "examples", "errors", "tokens p50/p95/max", "cut", "dupes"):
        table.add_column(column, justify="left" if column == "split" else "right", no_wrap=True)
    lengths = report.stats.get("lengths", {})
    dupes = report.stats.get("duplicates", {})
    for split, info in report.files.items():
        n = lengths.get(split)
        d = dupes.get(split)
        table.add_row(
            f"{split} ({escape(Path(info['path']).name)})",
            f"{info['examples']:,}",
            f"{info['errors']:,}",
            f"{n['p50']}/{n['p95']}/{n['max']}" if n else "-",
            f"{n['truncated']:,}" if n else "-",
            f"{d['near_duplicates']:,}" if d else "-",
        )
    return table


def _print_findings(console: Console, report: CheckReport) -> None:
    """The errors (with where each occurs, and how many more of a kind were not kept), then the warnings."""
    if report.errors:
        console.print(f"[bold red]errors ({report.error_total:,})[/]")
        for finding in report.errors:
            console.print(f"  [red]✗[/] {escape(finding.message)}", soft_wrap=True)
            for where in finding.where if finding.count > 1 else []:
                console.print(f"      {escape(where)}", soft_wrap=True)
        for kind, count in report.error_counts.items():
            if count > ERRORS_KEPT and kind not in ("labels",):
                console.print(f"  … {count - ERRORS_KEPT:,} more {kind} errors (first {ERRORS_KEPT} shown)")
    if report.warnings:
        console.print(f"[bold yellow]warnings ({len(report.warnings)})[/]")
        for finding in report.warnings:
            console.print(f"  [yellow]![/] [dim]{finding.kind}[/] {escape(finding.message)}", soft_wrap=True)
            for where in finding.where:
                console.print(f"      {escape(where)}", soft_wrap=True)
