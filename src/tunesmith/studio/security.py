"""What keeps the studio safe by default: it binds 127.0.0.1; any other address needs a token; every form
that changes something carries a per-process CSRF token and is refused without it (or from another
origin); and no path outside the studio's folder can be named, by `..`, an absolute path or a symlink."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path, PurePosixPath

from tunesmith.errors import UserError

COOKIE = "tunesmith_studio"
"""The cookie a token login sets (HttpOnly, SameSite=Strict)."""


class NotFound(UserError):
    """A name the studio cannot serve: outside its folder, or no run there (the page says 404)."""


def is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_local(host) and not token:
        raise UserError(
            f"the studio on {host} would be open to the network: give --token-file FILE (a token of 16 or more "
            "characters), or bind 127.0.0.1 (the default) and reach it through an SSH tunnel"
        )
    if token is not None and len(token) < 16:
        raise UserError("the studio's token must be at least 16 characters (e.g. `openssl rand -hex 24`)")


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def inside(root: Path, name: str) -> Path:
    """The folder `name` (a '/'-separated path under `root`) resolved, symlinks followed; UserError for an
    absolute path, a `..` part, or anything that resolves outside `root`."""
    parts = PurePosixPath(name).parts
    if not name or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name or "\x00" in name:
        raise NotFound(f"{name!r}: not a path inside the studio's folder")
    target = (root / Path(*parts)).resolve()
    if target != root and root not in target.parents:
        raise NotFound(f"{name!r}: not a path inside the studio's folder")
    return target
