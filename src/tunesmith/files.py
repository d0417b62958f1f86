"""Writing a file so that a reader, a crash or a refused write never meets half of it: the text goes to a hidden
file beside the target, which is renamed over it (atomic on POSIX file systems). When the file system refuses
the write (disk full, permission, a size limit), the hidden file is removed, the earlier target is left as it
was, and the OSError goes on to the caller, which says what it was writing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tunesmith.errors import WriteFailed, is_write_failure


def write_text_atomic(path: Path, text: str, what: str | None = None) -> None:
    """With `what` (e.g. "the report"), a refused write is errors.WriteFailed naming it, for the CLI's one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if what is None or not is_write_failure(exc):
            raise
        kept = "the earlier one there is kept" if path.exists() else "nothing was written"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WriteFailed(f"cannot write {what} {path} ({reason}); {kept}") from None


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
