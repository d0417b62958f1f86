"""`tunesmith serve`: load the runs, bind the port, run uvicorn until SIGINT/SIGTERM (which drain the
request log before exit)."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from rich.console import Console

from tunesmith.errors import UserError
from tunesmith.serving.app import build_app
from tunesmith.serving.pool import ModelPool
from tunesmith.serving.settings import ServeSettings
from tunesmith.sockets import listening_socket


def parse_runs(items: list[str]) -> dict[str, Path]:
    """`RUN` (served under its folder's name) or `NAME=RUN`; names must be unique."""
    runs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        folder = Path(path if sep else item)
        name = name if sep else folder.resolve().name
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise UserError(f"{item}: a served name may use letters, digits, '-', '_' and '.'")
        if name in runs:
            raise UserError(f"two runs would be served as {name!r}; name them: NAME=RUN")
        runs[name] = folder
    return runs


def read_keys(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        keys = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise UserError(f"{path}: cannot read the key file ({exc.strerror})") from None
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise UserError(f"{path}: no keys in it (one per line)")
    if any(len(k) < 16 for k in keys):
        raise UserError(f"{path}: keys must be at least 16 characters (e.g. `openssl rand -hex 24`)")
    return keys


def serve(runs: dict[str, Path], settings: ServeSettings, console: Console) -> None:
    if settings.auth and not settings.api_keys:
        raise UserError("API keys are required: give --api-key-file FILE (or --no-auth for local use only)")
    pool = ModelPool(
        runs,
        settings.device,
        settings.engine,
        settings.quant,
        settings.context_tokens,
        settings.chat_cache_mb,
    )
    sock = listening_socket(settings.host, settings.port)
    loading = "loading models" + (
        " (a first export takes a minute or more)" if settings.engine != "torch" else ""
    )
    with console.status(loading):
        pool.load_all()
    for name, served in pool.models.items():
        shared = pool.shared_with(name)
        note = f", shares its base with {', '.join(shared)}" if shared else ""
        if served.trained.run.holds() != "tuned":
            note += f"; holds the {served.trained.run.holds()} model (fine-tuning did not beat it)"
        if served.endpoint == "chat" or served.engine.label != "torch":
            note += f"; answers from {served.engine.label}"
        console.print(
            f"{name}: {served.trained.task.name} ({served.trained.config.method.name} on "
            f"{served.trained.config.model.name}), version {served.version}{note}"
        )
    app = build_app(pool, settings)
    port = sock.getsockname()[1]
    auth = "API key required" if settings.auth else "[red]no authentication[/]"
    console.print(f"listening on http://{settings.host}:{port} ({auth})", highlight=False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])
