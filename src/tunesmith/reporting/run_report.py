"""`tunesmith report RUN`: one self-contained HTML file about a run, built from what its folder recorded.

Sections: the run at a glance, base vs tuned on the test split (with the bootstrap intervals), training and
validation curves, the confusion matrix and per-class scores (classifiers) or example outputs (text
writers), forgetting, resource use (measured and the planner's estimate), the data check, and the config.
Plots are drawn with matplotlib and embedded as PNG; the page has no scripts and fetches nothing.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.evaluation.forgetting import describe
from tunesmith.evaluation.report import (
    EXAMPLE_COLUMNS,
    HOLDS,
    PROMPT_COLUMNS,
    clip,
    metric_rows,
    text_table,
)
from tunesmith.files import write_text_atomic
from tunesmith.reporting.deployment import deployment_section
from tunesmith.reporting.html import Cell, page, table
from tunesmith.runs import RunFolder
from tunesmith.units import human


def write_report(run_path: Path, out: Path | None = None) -> Path:
    """Write the report (default RUN/report.html) via a temporary file, so a failure leaves no half page."""
    run = RunFolder(Path(run_path))
    if not run.config.is_file():
        raise UserError(f"{run.root} is not a tunesmith run folder (no config.yaml)")
    target = Path(out) if out is not None else run.root / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, build_report(run), "the report")
    return target


def build_report(run: RunFolder) -> str:
    title = f"tunesmith run: {run.root.name}"
    subtitle = _subtitle(_json(run.summary) or {})
    head = f'<h1>{escape(title)}</h1>\n<p class="muted">{escape(subtitle)}</p>\n'
    return page(title, head + report_sections(run))


def report_sections(run: RunFolder) -> str:
    """The report's sections below its title, as HTML (the studio's Run page shows them too); those a run
    has not written yet (a run still training has no test section) are left out."""
    summary = _json(run.summary) or {}
    report = _json(run.eval) or {}
    check = _json(run.data_check) or {}
    events = _events(run.metrics)
    parts = [
        _glance(summary),
        _test_section(report),
        _curves(events, summary),
        _details(report),
        _forgetting(report.get("forgetting")),
        _resources(summary),
        deployment_section(run.root),
        _data_check(check),
        "<h2>Config</h2><pre>" + escape(run.config.read_text(encoding="utf-8")) + "</pre>",
    ]
    return "\n".join(p for p in parts if p)


# --- reading ---
def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _subtitle(summary: dict[str, Any]) -> str:
    if not summary:
        return "training has not finished: only what the run recorded so far is shown"
    return (
        f"{summary.get('task')} · {summary.get('model')} · {summary.get('method')} · {summary.get('device')}"
    )


# --- sections ---
def _glance(summary: dict[str, Any]) -> str:
    if not summary:
        return ""
    examples = summary.get("examples", {})
    trainable, total = summary.get("trainable_parameters", 0), summary.get("total_parameters", 1)
    best = next((k for k in summary if k.startswith("best_validation_")), None)
    rows = [
        ("trainable parameters", f"{trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"),
        (
            "examples (train / validation / test)",
            " / ".join(str(examples.get(s, 0)) for s in ("train", "validation", "test")),
        ),
        ("optimizer steps", f"{summary.get('optimizer_steps')} (best at step {summary.get('best_step')})"),
        (
            "training time",
            f"{summary.get('train_seconds', 0):.0f} s, {summary.get('train_samples_per_second', 0):.1f} samples/s",
        ),
    ]
    if best and summary.get(best) is not None:
        rows.append((best.replace("_", " "), f"{summary[best]:.4f}"))
    base_key = next((k for k in summary if k.startswith("base_validation_")), None)
    if base_key and summary.get(base_key) is not None:
        rows.append((base_key.replace("_", " "), f"{summary[base_key]:.4f}"))
    held = (
        "the base model: no fine-tuned checkpoint clearly beat it"
        if summary.get("holds") == "base"
        else "the fine-tuned model"
    )
    rows.append(("model the run holds", held))
    if summary.get("stopped_early"):
        rows.append(("early stopping", "yes"))
    return "<h2>At a glance</h2>" + table(["", ""], rows)


def _test_section(report: dict[str, Any]) -> str:
    if not report:
        return '<h2>Test set</h2><p class="muted">no test evaluation in this run</p>'
    holds = HOLDS.get(report.get("holds", "tuned"))
    notice = f'<p class="warning">{escape(holds)}</p>' if holds else ""
    tuned, base = report["tuned"], report.get("base")
    intervals = report.get("interval") or {}
    headers = [
        "metric",
        *(["base"] if base else []),
        "tuned",
        *(["tuned - base", "95% interval"] if base else []),
    ]
    rows = []
    css = {"better": "good", "worse": "bad", "same": ""}
    for r in metric_rows(report):
        row: list[object] = [r.metric]
        if r.base is not None:
            row.append(Cell(f"{r.base:.3f}", numeric=True))
        row.append(Cell(f"{r.tuned:.3f}", numeric=True))
        if r.delta is not None:
            row.append(Cell(f"{r.delta:+.3f}", css[r.verdict], numeric=True))
            good = "good" if r.significant and r.verdict == "better" else ""
            row.append(Cell(r.interval + (" *" if r.significant else ""), good, numeric=True))
        rows.append(row)
    note = f"{tuned.get('examples', '?')} test examples."
    if base:
        note += f" {report.get('base_description', '')}."
    if intervals:
        note += (
            " Interval: 95% paired bootstrap of tuned - base over the test examples; * where it excludes 0."
        )
    return (
        "<h2>Test set: base vs tuned</h2>"
        + notice
        + table(headers, rows)
        + f'<p class="muted">{escape(note)}</p>'
    )


def _curves(events: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    train = [e for e in events if e.get("event") == "train"]
    validation = [e for e in events if e.get("event") == "validation"]
    if not train and not validation:
        return ""
    from matplotlib.figure import Figure  # here: matplotlib takes a second to import

    metric = _validation_metric(validation, summary)
    panels = 2 if metric and metric != "loss" else 1
    fig = Figure(figsize=(5.2 * panels, 3.4), dpi=110, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    if train:
        ax.plot(
            [e["step"] for e in train], [e["loss"] for e in train], label="training loss", color="#2b6cb0"
        )
    if validation and "loss" in validation[0]:
        ax.plot(
            [e["step"] for e in validation],
            [e["loss"] for e in validation],
            "o-",
            label="validation loss",
            color="#c05621",
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if panels == 2:
        ax = axes[1]
        points = [(e["step"], e[metric]) for e in validation if metric in e]
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            "o-",
            color="#2f855a",
            label=f"validation {metric}",
        )
        best = [(e["step"], e[metric]) for e in validation if e.get("best") and metric in e]
        if best:
            ax.plot(*best[-1], "*", markersize=14, color="#d69e2e", label="kept (best)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return "<h2>Training</h2>" + _image(fig, f"training loss and validation {metric or 'loss'} by step")


def _validation_metric(validation: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    for key in summary:
        if key.startswith("best_validation_"):
            return key.removeprefix("best_validation_")
    return "loss" if validation else None


def _details(report: dict[str, Any]) -> str:
    tuned = report.get("tuned") or {}
    parts = []
    if "per_class" in tuned:
        names = list(tuned["per_class"])
        rows = [
            [
                name,
                *(Cell(f"{s[k]:.3f}", numeric=True) for k in ("precision", "recall", "f1")),
                Cell(s["support"], numeric=True),
            ]
            for name, s in tuned["per_class"].items()
        ]
        for row in rows:
            if row[0] in tuned.get("never_predicted", ()):
                row[0] = f"{row[0]} (never predicted)"
        parts.append(
            "<h2>Per class (tuned)</h2>" + table(["class", "precision", "recall", "f1", "support"], rows)
        )
        if "confusion_matrix" in tuned and len(names) <= 40:
            parts.append(_confusion(tuned["confusion_matrix"], names))
    if "per_label" in tuned:
        parts.append(_per_label(tuned))
    if "per_type" in tuned:
        parts.append(_per_type(tuned["per_type"], (report.get("base") or {}).get("per_type")))
    if tuned.get("residuals"):
        parts.append(_residuals(tuned["residuals"], (report.get("base") or {}).get("residuals")))
    if report.get("examples"):
        columns, rows = text_table(report["examples"], EXAMPLE_COLUMNS, limit=600)
        parts.append("<h2>Example outputs</h2>" + table(columns, rows))
    return "".join(parts)


def _per_label(tuned: dict[str, Any]) -> str:
    """Multi-label: each label's precision, recall, F1, support and threshold, least supported last."""
    never = set(tuned.get("never_predicted", ()))
    ordered = sorted(tuned["per_label"].items(), key=lambda item: -item[1]["support"])
    rows = [
        [
            f"{name} (never predicted)" if name in never else name,
            *(Cell(f"{s[k]:.3f}", numeric=True) for k in ("precision", "recall", "f1")),
            Cell(s["support"], numeric=True),
            Cell(f"{s['threshold']:.2f}" if "threshold" in s else "", numeric=True),
        ]
        for name, s in ordered
    ]
    headers = ["label", "precision", "recall", "f1", "support", "threshold"]
    return "<h2>Per label (tuned, test set)</h2>" + table(headers, rows)


def _per_type(tuned: dict[str, Any], base: dict[str, Any] | None) -> str:
    """Token classification: each entity type's precision, recall and F1 (tuned) beside the base's F1, most
    frequent type first."""
    ordered = sorted(tuned.items(), key=lambda item: -item[1]["support"])
    rows = [
        [
            name,
            Cell(f"{base[name]['f1']:.3f}" if base and name in base else "", numeric=True),
            *(Cell(f"{s[k]:.3f}", numeric=True) for k in ("precision", "recall", "f1")),
            Cell(s["support"], numeric=True),
        ]
        for name, s in ordered
    ]
    headers = ["entity type", "base f1", "precision", "recall", "f1", "entities"]
    return "<h2>Entities by type (test set)</h2>" + table(headers, rows)


def _residuals(tuned: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]] | None) -> str:
    """Regression: the test examples in bins of their true value, mean prediction and error per bin (base and
    tuned), as a table and a plot: where the model is off, and which way."""
    from matplotlib.figure import Figure

    rows = [
        [
            f"{b['low']:.3g} .. {b['high']:.3g}",
            Cell(b["examples"], numeric=True),
            Cell(f"{b['mean_truth']:.3f}", numeric=True),
            Cell(f"{base[i]['mean_predicted']:.3f}" if base else "", numeric=True),
            Cell(f"{b['mean_predicted']:.3f}", numeric=True),
            Cell(f"{base[i]['mae']:.3f}" if base else "", numeric=True),
            Cell(f"{b['mae']:.3f}", numeric=True),
        ]
        for i, b in enumerate(tuned)
    ]
    headers = ["true value", "examples", "mean truth", "base mean", "tuned mean", "base MAE", "tuned MAE"]
    fig = Figure(figsize=(5.5, 4), dpi=110, layout="constrained")
    ax = fig.subplots()
    truth = [b["mean_truth"] for b in tuned]
    ax.plot(truth, truth, color="grey", linestyle="--", label="perfect")
    if base:
        ax.plot(truth, [b["mean_predicted"] for b in base], marker="o", label="base")
    ax.plot(truth, [b["mean_predicted"] for b in tuned], marker="o", label="tuned")
    ax.set_xlabel("mean true value (bin)")
    ax.set_ylabel("mean prediction")
    ax.legend()
    plot = _image(fig, "mean prediction against mean true value per bin, base and tuned")
    return "<h2>Residuals (test set, by true value)</h2>" + table(headers, rows) + plot


def _confusion(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    from matplotlib.figure import Figure

    size = max(3.5, 0.45 * len(names) + 1.5)
    fig = Figure(figsize=(size + 1, size), dpi=110, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), [n[:14] for n in names], rotation=45, ha="right")
    ax.set_yticks(range(len(names)), [n[:14] for n in names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    peak = max((max(row) for row in matrix), default=0)
    for r, row in enumerate(matrix):
        for c, n in enumerate(row):
            ax.text(
                c, r, str(n), ha="center", va="center", fontsize=8, color="white" if n > peak / 2 else "black"
            )
    fig.colorbar(image, ax=ax, shrink=0.8)
    return "<h2>Confusion matrix (tuned, test set)</h2>" + _image(
        fig, "confusion matrix of the tuned model on the test set"
    )


def _forgetting(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    parts = ["<h2>Forgetting: general ability, base vs tuned</h2>", "<ul>"]
    parts += [f"<li>{escape(line)}</li>" for line in describe(section)]
    parts.append("</ul>")
    parts += [f'<div class="warning">{escape(w)}</div>' for w in section.get("warnings", [])]
    if section.get("prompts"):
        _, rows = text_table(section["prompts"], PROMPT_COLUMNS, limit=600)
        parts.append(table(["general prompt", "base", "tuned"], rows))
    parts.append(
        '<p class="muted">Measured on the general-English reference that ships with tunesmith; it shows how much '
        "general language ability tuning cost, not how good the model is at your task.</p>"
    )
    return "".join(parts)


def _resources(summary: dict[str, Any]) -> str:
    estimate = summary.get("estimate")
    if not summary:
        return ""
    rows: list[list[object]] = []
    if summary.get("peak_memory_bytes"):
        rows.append(
            [
                "peak memory, measured",
                Cell(human(summary["peak_memory_bytes"]), numeric=True),
                summary.get("peak_memory_of", ""),
            ]
        )
    if estimate:
        rows.append(
            [
                "peak memory, planner's estimate",
                Cell(human(estimate["peak_bytes"]), numeric=True),
                "before step 1",
            ]
        )
        for part in ("runtime", "weights", "gradients", "optimizer", "activations", "evaluation"):
            rows.append([f"  {part}", Cell(human(estimate[f"{part}_bytes"]), numeric=True), "estimate"])
        rows.append(
            [
                "epoch time, estimate",
                Cell(f"{estimate['epoch_seconds']:.1f} s", numeric=True),
                f"{estimate['steps_per_epoch']} steps",
            ]
        )
    if summary.get("train_step_seconds") is not None:
        rows.append(
            [
                "time in training steps",
                Cell(f"{summary['train_step_seconds']:.1f} s", numeric=True),
                "measured",
            ]
        )
    return "<h2>Resources</h2>" + table(["", "", ""], rows) if rows else ""


def _data_check(check: dict[str, Any]) -> str:
    if not check:
        return ""
    files = check.get("files") or {}
    rows = []
    for split, info in files.items():
        info = info if isinstance(info, dict) else {"path": info}
        counts = [Cell(info.get(k, ""), numeric=True) for k in ("examples", "errors")]
        rows.append([split, info.get("path", ""), *counts])
    parts = ["<h2>Data check</h2>"]
    if rows:
        parts.append(table(["split", "file", "examples", "errors"], rows))
    findings = [*check.get("errors", []), *check.get("warnings", [])]
    if findings:
        parts.append(
            table(
                ["level", "check", "finding", "count"],
                [
                    [f["level"], f["kind"], clip(f["message"], 400), Cell(f.get("count", ""), numeric=True)]
                    for f in findings
                ],
            )
        )
    else:
        parts.append('<p class="good">no errors, no warnings</p>')
    return "".join(parts)


# --- helpers ---
def _image(fig: Any, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'
