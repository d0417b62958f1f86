"""`tunesmith compare RUN1 RUN2 ...`: runs side by side, from what each run folder recorded (run.json,
eval.json): test metrics with their gain over the base model, method, trainable parameters, time, memory,
and what tuning cost in general ability. Nothing is loaded or recomputed."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tunesmith.errors import UserError
from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.reporting.html import Cell, page, table
from tunesmith.runs import RunFolder
from tunesmith.units import human


def run_row(path: Path) -> dict[str, Any]:
    """What one run folder recorded, flattened for the table (missing parts stay None)."""
    run = RunFolder(path)
    if not run.summary.is_file():
        raise UserError(f"{path} has no run.json: not a finished tunesmith run")
    summary = run.read_json(run.summary)
    report = run.read_json(run.eval) if run.eval.is_file() else {}
    forgetting = report.get("forgetting") or {}
    memory = summary.get("peak_memory_bytes") or (summary.get("estimate") or {}).get("peak_bytes")
    return {
        "run": str(path),
        "task": summary.get("task"),
        "model": summary.get("model"),
        "method": summary.get("method"),
        "holds": summary.get("holds", "tuned"),
        "trainable_parameters": summary.get("trainable_parameters"),
        "total_parameters": summary.get("total_parameters"),
        "train_examples": (summary.get("examples") or {}).get("train"),
        "train_seconds": summary.get("train_seconds"),
        "samples_per_second": summary.get("train_samples_per_second"),
        "peak_memory_bytes": memory,
        "peak_memory_measured": "peak_memory_bytes" in summary,
        "headline": report.get("headline", []),
        "tuned": {k: v for k, v in (report.get("tuned") or {}).items() if isinstance(v, int | float)},
        "delta": report.get("delta") or {},
        "interval": report.get("interval") or {},
        "perplexity_increase": forgetting.get("perplexity_increase"),
        "embedding_similarity": forgetting.get("embedding_similarity"),
        "forgetting_warnings": len(forgetting.get("warnings", [])),
    }


def compare_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    if not paths:
        raise UserError("name at least one run folder to compare")
    return [run_row(Path(p)) for p in paths]


def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every headline metric any run has, in first-seen order (loss and perplexity last)."""
    seen: list[str] = []
    for row in rows:
        seen += [m for m in row["headline"] if m not in seen and m in row["tuned"]]
    return sorted(seen, key=lambda m: not greater_is_better(m))


def best_runs(rows: Sequence[dict[str, Any]], metric: str) -> set[int]:
    values = [(i, r["tuned"][metric]) for i, r in enumerate(rows) if metric in r["tuned"]]
    if len(values) < 2:
        return set()
    best = (max if greater_is_better(metric) else min)(v for _, v in values)
    return {i for i, v in values if v == best}


def _parameters(row: dict[str, Any]) -> str:
    trainable, total = row["trainable_parameters"], row["total_parameters"]
    if trainable is None:
        return ""
    return f"{trainable:,} ({100 * trainable / total:.2f}%)" if total else f"{trainable:,}"


def _metric(row: dict[str, Any], metric: str) -> str:
    if metric not in row["tuned"]:
        return ""
    text = f"{row['tuned'][metric]:.3f}"
    if metric in row["delta"]:
        star = "*" if (row["interval"].get(metric) or {}).get("excludes_zero") else ""
        text += f" ({row['delta'][metric]:+.3f}{star})"
    return text


def _forgetting(row: dict[str, Any]) -> str:
    if row["perplexity_increase"] is not None:
        text = f"ppl {100 * row['perplexity_increase']:+.1f}%"
    elif row["embedding_similarity"] is not None:
        text = f"cos {row['embedding_similarity']:.3f}"
    else:
        return ""
    return text + (" !" if row["forgetting_warnings"] else "")


def _cells(row: dict[str, Any], metrics: Sequence[str]) -> list[str]:
    memory = row["peak_memory_bytes"]
    return [
        Path(row["run"]).name,
        row["task"] or "",
        (row["method"] or "")
        + ({"base": " (holds the base)", "start": " (holds its start)"}.get(row["holds"], "")),
        _parameters(row),
        *(_metric(row, m) for m in metrics),
        _forgetting(row),
        f"{row['train_seconds']:.0f} s" if row["train_seconds"] is not None else "",
        f"{row['samples_per_second']:.1f}" if row["samples_per_second"] is not None else "",
        (human(memory) + ("" if row["peak_memory_measured"] else " (est.)")) if memory else "",
    ]


HEADERS = ("run", "task", "method", "trainable parameters")
TAIL = ("forgetting", "train time", "samples/s", "peak memory")
NOTE = (
    "Metrics are the tuned model's on each run's own test split, with the gain over the base model in "
    "brackets (* where its 95% bootstrap interval excludes 0). forgetting: general-English perplexity change "
    "(decoders) or mean cosine similarity of general sentence embeddings to the base (encoders); ! marks a "
    'warning. Runs are comparable on a metric only when their test data are the same. "holds the base": no '
    "fine-tuned checkpoint beat the base model on validation, so the run kept the base (train.keep)."
)


def print_comparison_table(console: Console, rows: Sequence[dict[str, Any]]) -> None:
    metrics = metric_columns(rows)
    out = Table(title="runs compared")
    for header in (*HEADERS, *metrics, *TAIL):
        out.add_column(header, justify="left" if header in HEADERS[:3] else "right")
    best = {m: best_runs(rows, m) for m in metrics}
    for i, row in enumerate(rows):
        cells = _cells(row, metrics)
        for j, m in enumerate(metrics):
            if i in best[m]:
                cells[len(HEADERS) + j] = f"[bold green]{cells[len(HEADERS) + j]}[/]"
        out.add_row(*cells)
    console.print(out)
    console.print(f"[dim]{NOTE}[/]")


def comparison_html(rows: Sequence[dict[str, Any]]) -> str:
    return page("tunesmith: runs compared", comparison_body(rows))


def comparison_body(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a page's body: its heading, the table (the best value of each metric marked), the
    note and the runs' models (the studio's Compare page shows it too)."""
    metrics = metric_columns(rows)
    best = {m: best_runs(rows, m) for m in metrics}
    body_rows = []
    for i, row in enumerate(rows):
        cells: list[object] = list(_cells(row, metrics))
        for j, m in enumerate(metrics):
            k = len(HEADERS) + j
            cells[k] = Cell(cells[k], "good" if i in best[m] else "", numeric=True)
        for k in range(len(HEADERS) + len(metrics), len(cells)):
            cells[k] = Cell(cells[k], numeric=True)
        body_rows.append(cells)
    body = (
        "<h1>tunesmith: runs compared</h1>"
        + table([*HEADERS, *metrics, *TAIL], body_rows)
        + f'<p class="muted">{escape(NOTE)}</p>'
        + "<h2>runs</h2><ul>"
        + "".join(f"<li>{escape(r['run'])}: {escape(str(r['model']))}</li>" for r in rows)
        + "</ul>"
    )
    return body
