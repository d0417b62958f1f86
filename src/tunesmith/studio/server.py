"""Bind, say where (with the token link when one is set), and run the studio until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from rich.console import Console

from tunesmith.errors import UserError
from tunesmith.sockets import listening_socket
from tunesmith.studio.app import StudioSettings, build_studio
from tunesmith.studio.security import check_bind


def run_studio(root: Path, settings: StudioSettings, console: Console) -> None:
    if not Path(root).is_dir():
        raise UserError(f"{root}: no such folder (the studio shows the run folders under it)")
    check_bind(settings.host, settings.token)
    sock = listening_socket(settings.host, settings.port)
    app = build_studio(root, settings)
    port = sock.getsockname()[1]
    link = f"http://{settings.host}:{port}/" + (f"?token={settings.token}" if settings.token else "")
    console.print(f"studio over {Path(root).resolve()}: {link}", highlight=False, markup=False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
