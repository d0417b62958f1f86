"""The report's production part: which version serves, the versions retune made, and the latest drift
report of `tunesmith monitor` (RUN/drift.json). Empty for a run that was never served."""

from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.reporting.html import Cell, table
from tunesmith.versions import Deployment


def deployment_section(root: Path) -> str:
    return _versions(root) + _drift(root)


def _versions(root: Path) -> str:
    deployment = Deployment(root)
    if not deployment.state_file.is_file() and not deployment.versions_dir.is_dir():
        return ""
    try:
        current = deployment.current()
    except UserError as exc:
        return f'<h2>Versions</h2><p class="warning">{escape(str(exc))}</p>'
    rows = []
    for version in deployment.versions():
        decision = _read(deployment.versions_dir / version / "retune.json") or {}
        comparison = decision.get("comparison", {})
        score = (
            f"{comparison['metric']} {comparison['candidate']:.4f} vs {comparison['serving']:.4f}"
            if comparison
            else ""
        )
        corrections = decision.get("data", {}).get("corrections_used", "")
        rows.append(
            [
                Cell(
                    version + (" (serving)" if version == current else ""),
                    "good" if version == current else "",
                ),
                decision.get("from", ""),
                corrections,
                score,
                decision.get("reason", "the run as trained" if version == "v1" else ""),
            ]
        )
    return "<h2>Versions</h2>" + table(
        ["version", "from", "corrections", "test vs serving", "decision"], rows
    )


def _drift(root: Path) -> str:
    report = _read(root / "drift.json")
    if report is None:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.get("created", 0)))
    status = report.get("status", "")
    css = "bad" if report.get("drift") else "good"
    head = (
        f"<h2>Drift</h2><p>latest <code>tunesmith monitor</code>: {when}, version {escape(str(report.get('version')))}, "
        f'{report.get("requests", 0)} requests: <span class="{css}">{escape(status)}</span></p>'
    )
    if status == "insufficient_data":
        return head + f'<p class="muted">{escape(report.get("message", ""))}</p>'
    rows = []
    for name, d in report.get("detectors", {}).items():
        p_value = d.get("detail", {}).get("p_value", d.get("detail", {}).get("chi2_p_value"))
        rows.append(
            [
                name.replace("_", " "),
                Cell(f"{d['score']:.4g}", numeric=True),
                Cell(f"{d['threshold']:g}", numeric=True),
                Cell("" if p_value is None else f"{p_value:.3g}", numeric=True),
                Cell("ALERT" if d["alert"] else "ok", "bad" if d["alert"] else "good"),
            ]
        )
    parts = [head, table(["detector", "score", "threshold", "p-value", ""], rows)]
    unfamiliar = report.get("most_unfamiliar", [])
    if unfamiliar:
        shown = [[u["text"], Cell(f"{u['p_recent']:.3f}", numeric=True)] for u in unfamiliar]
        parts.append("<h3>Least familiar requests</h3>" + table(["text", "P(recent)"], shown))
    return "".join(parts)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
