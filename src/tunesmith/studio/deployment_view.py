"""What the Serve and watch page shows of a deployed run: its versions and which one serves (with the
history of changes), the drift status `tunesmith monitor` last wrote, and the served requests that got a
correction. Read only: nothing here creates a request log or changes a version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.monitoring.monitor import describe
from tunesmith.monitoring.request_log import RequestLog, default_url
from tunesmith.versions import Deployment

CORRECTIONS_SHOWN = 50


@dataclass
class ServeView:
    versions: list[str]
    current: str
    history: list[dict[str, Any]]
    drift: dict[str, Any] | None = None
    drift_lines: list[str] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)
    corrections_total: int = 0
    problem: str = ""


def serve_view(root: Path) -> ServeView:
    deployment = Deployment(root)
    try:
        state = deployment.state()
    except UserError as exc:
        return ServeView(deployment.versions(), "v1", [], problem=str(exc))
    view = ServeView(deployment.versions(), str(state["current"]), list(state.get("history", [])))
    drift = deployment.root / "drift.json"
    if drift.is_file():
        view.drift = json.loads(drift.read_text(encoding="utf-8"))
        view.drift_lines = describe(view.drift)
    if (deployment.root / "requests.db").is_file():  # the server's own log; never created by looking
        log = RequestLog(default_url(deployment.root))
        try:
            found = log.corrections(deployment.root)
        finally:
            log.close()
        view.corrections_total = len(found)
        view.corrections = found[-CORRECTIONS_SHOWN:][::-1]
    return view
