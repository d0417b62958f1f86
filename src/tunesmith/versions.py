"""Versions of a deployed run, side by side in its folder, and which one serves.

    RUN/                   version v1: the run as `tunesmith train` wrote it
    RUN/versions/v2/       a run folder written by `tunesmith retune` (then v3, ...)
    RUN/serving.json       {"current": "v2", "history": [{"version", "at", "reason"}, ...]}

Without serving.json, v1 serves. Promotion and rollback only rewrite serving.json (atomically); a running
server watches it and swaps models without a restart. Nothing is deleted, so any version can come back.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.files import write_json_atomic
from tunesmith.runs import RunFolder

_VERSION = re.compile(r"^v([1-9][0-9]*)$")


class Deployment:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.versions_dir = self.root / "versions"
        self.state_file = self.root / "serving.json"

    def versions(self) -> list[str]:
        """Finished versions, oldest first."""
        found = ["v1"] if RunFolder(self.root).is_run() else []
        if self.versions_dir.is_dir():
            numbered = [p.name for p in self.versions_dir.iterdir() if _VERSION.match(p.name)]
            for name in sorted(numbered, key=lambda n: int(n[1:])):
                if (self.versions_dir / name / "model" / "tunesmith.json").is_file():
                    found.append(name)
        return found

    def folder(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise UserError(f"{version!r} is not a version name (v1, v2, ...)")
        folder = self.root if version == "v1" else self.versions_dir / version
        if version not in self.versions():
            known = ", ".join(self.versions()) or "none"
            raise UserError(f"{self.root.name} has no finished version {version}; versions: {known}")
        return folder

    def next_version(self) -> str:
        taken = [int(p.name[1:]) for p in self.versions_dir.glob("v*") if _VERSION.match(p.name)]
        return f"v{max([1, *taken]) + 1}"

    def state(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            return {"current": "v1", "history": []}
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(
                f"{self.state_file}: unreadable ({exc}); fix or delete it (v1 then serves)"
            ) from None
        if not isinstance(state, dict) or not _VERSION.match(str(state.get("current", ""))):
            raise UserError(f"{self.state_file}: no valid 'current' version")
        return state

    def current(self) -> str:
        return str(self.state()["current"])

    def current_folder(self) -> Path:
        return self.folder(self.current())

    def serve(self, version: str, reason: str) -> dict[str, Any]:
        """Make `version` the serving one (promote or roll back); returns the new state."""
        self.folder(version)  # refuses unknown or unfinished versions before anything changes
        state = self.state()
        previous = state["current"]
        history = [
            *state.get("history", []),
            {"version": version, "from": previous, "at": time.time(), "reason": reason},
        ]
        new = {"current": version, "history": history}
        write_json_atomic(self.state_file, new)
        return new
