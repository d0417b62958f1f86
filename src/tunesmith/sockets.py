"""The listening socket the HTTP apps (`serve`, `studio`) bind before uvicorn takes it."""

from __future__ import annotations

import socket

from tunesmith.errors import UserError


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: a free port), IPv6 where the host is one; UserError when the
    address cannot be had. proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    without it every keep-alive response waits ~40 ms for a delayed ACK between its header and body."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock
