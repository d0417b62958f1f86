"""Errors a user can act on. Raised where the fact is known, printed once at the CLI edge (exit code 2)."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user: a file, a config value, a name. The CLI prints it and exits with 2."""

    exit_code = 2


class DataError(UserError):
    """A data file problem, located by file and line (or row). `kind` groups problems in the data check's
    report (encoding, malformed, missing_field, empty, invalid, chat_structure, answer_cut_off, no_rows,
    labels)."""

    def __init__(
        self, path: str | Path, line: int | None, message: str, unit: str = "line", kind: str = "invalid"
    ):
        self.path = Path(path)
        self.line = line
        self.unit = unit
        self.kind = kind
        self.detail = message
        where = f"{self.path.name} {unit} {line}" if line is not None else f"{self.path.name}"
        super().__init__(f"{where}: {message}")


class ConfigError(UserError):
    """A config key or value that cannot be used."""
