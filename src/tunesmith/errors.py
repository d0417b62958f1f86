"""Errors a user can act on. Raised where the fact is known, printed once at the CLI edge (exit code 2)."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user: a file, a config value, a name. The CLI prints it and exits with 2."""

    exit_code = 2


class DataError(UserError):
    """A data file problem, located by file and line (or row). `kind` groups problems in the data check's
    report (encoding, malformed, missing_field, empty, invalid, chat_structure, preference_structure,
    answer_cut_off, no_rows, labels)."""

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


class Interrupted(Exception):
    """Training stopped on a signal (SIGTERM, a first Ctrl-C) after writing a checkpoint at that step. The CLI
    prints it, with how to continue, and exits with 128 + the signal number (143, 130), as shells do."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class WriteFailed(Exception):
    """A file could not be written: the disk is full, a permission or a file-size limit refuses it. What was
    there before is kept (checkpoints, exports and reports are written aside and renamed into place); the CLI
    prints it in one line and exits with 1."""

    exit_code = 1


def is_write_failure(exc: BaseException) -> bool:
    """Whether `exc` is the file system refusing a write: an OSError from Python's own files, or the same
    from safetensors' writer (which raises its own type, saying "I/O error"), or torch.save's archive
    writer (a RuntimeError from its zip container)."""
    if isinstance(exc, OSError):
        return True
    text = str(exc)
    if type(exc).__name__ == "SafetensorError":
        return "I/O error" in text
    return isinstance(exc, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text)
