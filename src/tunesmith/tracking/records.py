"""A run's own records (config, metrics.jsonl events, data_check.json, run.json, eval.json) in the shapes
every tracker takes: flat params, metrics by name, markdown texts. Metric names are grouped by a prefix
(train/, validation/, test/, forgetting/, plan/, data/) so each tool shows them as sections."""

from __future__ import annotations

import json
import math
from typing import Any

PARAM_CHARS = 6000
"""Longest param value kept (MLflow's limit); longer ones are cut with an ellipsis."""


def flat_params(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"epochs": 3}} -> {"train.epochs": "3"}; lists and empty values as JSON text."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        out[name] = text if len(text) <= PARAM_CHARS else text[: PARAM_CHARS - 1] + "…"
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def event_metrics(record: dict[str, Any]) -> tuple[dict[str, float], int] | None:
    """A metrics.jsonl event as (metrics, step): training loss, learning rate and samples/s; every number a
    validation measured. Other events (the frozen-layer cache's count) are not curves: None."""
    kind, step = record.get("event"), int(record.get("step", 0))
    if kind == "train":
        names = {"loss": "loss", "lr": "learning_rate", "samples_per_second": "samples_per_second"}
        return {
            f"train/{to}": float(record[k]) for k, to in names.items() if _number(record.get(k)) is not None
        }, step
    if kind == "validation":
        skip = {"step", "epoch", "best"}
        values = {f"validation/{k}": _number(v) for k, v in record.items() if k not in skip}
        return {k: v for k, v in values.items() if v is not None}, step
    return None


def data_check_metrics(check: dict[str, Any]) -> dict[str, float]:
    out = {
        f"data/{split}_examples": float(f.get("examples", 0)) for split, f in check.get("files", {}).items()
    }
    out["data/errors"] = float(check.get("error_total", 0))
    out["data/warnings"] = float(len(check.get("warnings", [])))
    return out


def data_check_text(check: dict[str, Any]) -> str:
    files = ", ".join(f"{split} {f.get('examples', 0)}" for split, f in check.get("files", {}).items())
    lines = [f"**data check**: {files} examples; {check.get('error_total', 0)} errors", ""]
    lines += [f"- {w['kind']}: {w['message']}" for w in check.get("warnings", [])] or ["- no warnings"]
    return "\n".join(lines)


def plan_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """What the run measured beside what the planner estimated before it (when it estimated)."""
    mib = 2**20
    out = {
        "plan/measured_peak_mb": summary["peak_memory_bytes"] / mib,
        "plan/measured_train_seconds": float(summary["train_seconds"]),
        "plan/measured_step_seconds": float(summary["train_step_seconds"]),
        "train/mean_samples_per_second": float(summary["train_samples_per_second"]),
        "train/mean_tokens_per_second": float(summary["train_tokens_per_second"]),
    }
    estimate = summary.get("estimate") or {}
    if "peak_bytes" in estimate:
        out["plan/estimated_peak_mb"] = estimate["peak_bytes"] / mib
    if estimate.get("steps_per_epoch"):
        epochs = summary["optimizer_steps"] / estimate["steps_per_epoch"]
        out["plan/estimated_step_seconds"] = estimate["epoch_seconds"] * epochs
    return out


def plan_text(summary: dict[str, Any]) -> str:
    m = plan_metrics(summary)
    estimated = m.get("plan/estimated_peak_mb")
    peak = f"{estimated:,.0f} MiB estimated, " if estimated is not None else "no estimate, "
    seconds = m.get("plan/estimated_step_seconds")
    time = f"{seconds:.1f} s estimated, " if seconds is not None else ""
    return (
        f"**peak memory**: {peak}{m['plan/measured_peak_mb']:,.0f} MiB measured ({summary['peak_memory_of']})\n\n"
        f"**training steps**: {time}{m['plan/measured_step_seconds']:.1f} s measured "
        f"({m['plan/measured_train_seconds']:.1f} s with validation); {summary['optimizer_steps']} steps on "
        f"{summary['device']}; the run holds the {summary['holds']} model"
    )


def evaluation_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Base and tuned on the test split, the gain and its bootstrap interval, per headline metric; forgetting."""
    out: dict[str, float] = {}
    for key in report.get("headline", []):
        for side in ("base", "tuned"):
            value = _number((report.get(side) or {}).get(key))
            if value is not None:
                out[f"test/{side}/{key}"] = value
        if (delta := _number((report.get("delta") or {}).get(key))) is not None:
            out[f"test/gain/{key}"] = delta
        interval = (report.get("interval") or {}).get(key) or {}
        for end in ("low", "high"):
            if (value := _number(interval.get(end))) is not None:
                out[f"test/gain_{end}/{key}"] = value
    for key, value in (report.get("forgetting") or {}).items():
        if (number := _number(value)) is not None:
            out[f"forgetting/{key}"] = number
    return out


def evaluation_text(report: dict[str, Any]) -> str:
    """Base vs tuned as a markdown table, with the interval of the gain."""
    rows = ["| metric | base | tuned | gain | 95% interval |", "|---|---|---|---|---|"]
    for key in report.get("headline", []):
        base = (report.get("base") or {}).get(key)
        tuned = report["tuned"].get(key)
        interval = (report.get("interval") or {}).get(key)
        span = f"[{interval['low']:+.3f}, {interval['high']:+.3f}]" if interval else ""
        delta = (report.get("delta") or {}).get(key)
        cells = [key, _shown(base), _shown(tuned), "" if delta is None else f"{delta:+.3f}", span]
        rows.append("| " + " | ".join(cells) + " |")
    warnings = (report.get("forgetting") or {}).get("warnings") or []
    rows += ["", *(f"- forgetting: {w}" for w in warnings)]
    return "\n".join(rows).rstrip()


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""
