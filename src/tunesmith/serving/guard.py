"""Everything around the endpoints: who may call (API and admin keys, compared in constant time), what is
refused before a body is read (oversize, no length), and how refusals and faults are answered (OpenAI's
error shape; a 500 carries an id the server log prints with the traceback). Every response is counted by
path and status for /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.serving.errors import ApiError, log_fault
from tunesmith.serving.metrics import Metrics
from tunesmith.serving.schemas import error_body
from tunesmith.serving.settings import ServeSettings

NO_KEY = "missing or wrong API key: send Authorization: Bearer KEY"


def require_key(request: Request, settings: ServeSettings) -> None:
    if settings.auth and not has_key(request, settings.api_keys):
        raise ApiError(401, NO_KEY, "invalid_api_key")


def require_admin(request: Request, settings: ServeSettings) -> None:
    if not settings.auth:
        return
    if not settings.admin_keys:
        raise ApiError(
            403, "admin endpoints are off: start the server with --admin-key-file", "admin_disabled"
        )
    if not has_key(request, settings.admin_keys):
        raise ApiError(401, "missing or wrong admin key", "invalid_api_key")


def has_key(request: Request, keys: Iterable[str]) -> bool:
    """Whether the request's bearer token is one of `keys`. Constant time in the token: every key is
    compared, digests make the lengths equal."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = _digest(token.strip() if scheme.lower() == "bearer" else "")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, _digest(key))
    return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def install_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.code), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the body is checked before the endpoint runs: a caller without a key learns that first, not more
        if settings.auth and not has_key(request, (*settings.api_keys, *settings.admin_keys)):
            return JSONResponse(
                error_body(NO_KEY, "invalid_request_error", "invalid_api_key"), status_code=401
            )
        message = "invalid request: " + "; ".join(_problems(request, exc))
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_body"), status_code=422)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        error_id = f"err-{uuid.uuid4()}"
        log_fault(error_id, request.url.path, exc)
        request.scope["tunesmith.logged"] = True
        message = f"internal server error ({error_id}); the server log has its details"
        return JSONResponse(error_body(message, "server_error", "internal_error"), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error", f"http_{exc.status_code}"),
            status_code=exc.status_code,
        )


def _problems(request: Request, exc: RequestValidationError) -> list[str]:
    """What is wrong with the body, field by field (at most five), and a missing JSON content type."""
    problems = []
    if "json" not in request.headers.get("content-type", ""):
        problems.append("send the body as JSON with Content-Type: application/json")
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if _field_part(p)) or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid').removeprefix('Value error, ')}")
    return problems


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _field_part(part: Any) -> bool:
    """Whether a part of a pydantic error location names a field or an index, not the body or a member of
    a union (`str`, `list[TextPart]`, `function-after[...]`)."""
    if isinstance(part, int):
        return True
    return part != "body" and part.isidentifier() and part.lower() not in _TYPE_TAGS


DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0
"""A body refused as too large is still read and dropped, up to this many bytes and seconds, so the client,
which is still sending, reads the 413 instead of a connection reset; past either limit the answer comes at
once and the connection closes."""


async def _drain(receive: Callable[[], Awaitable[Any]]) -> None:
    async def read() -> None:
        seen = 0
        while seen <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read(), DRAIN_SECONDS)


class Guard:
    """ASGI wrapper around the app: refuses oversize bodies before they are read (413; 411 without a
    length), and counts every response by path and status for /metrics."""

    KNOWN = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/classify", "/v1/feedback")

    def __init__(self, app: FastAPI, settings: ServeSettings, metrics: Metrics):
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        label = path if path in self.KNOWN else ("/v1/admin" if path.startswith("/v1/admin") else "other")
        if path.startswith("/v1/models/"):
            label = "/v1/models"
        status = {"code": 500}
        started = time.perf_counter()

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                code, message, error = refusal
                if code == 413:
                    await _drain(receive)
                response = JSONResponse(error_body(message, "invalid_request_error", error), status_code=code)
                await response(scope, receive, counted)
            else:
                await self.app(scope, receive, counted)
        except Exception as exc:  # noqa: BLE001 - answered (500) and logged once, the server goes on
            if not scope.get("tunesmith.logged"):
                log_fault(f"err-{uuid.uuid4()}", path, exc)
            if status["code"] == 500 and not status.get("sent"):
                body = error_body("internal server error; the server log has its details", "server_error")
                await JSONResponse(body, status_code=500)(scope, receive, counted)
        finally:
            metrics = self.metrics
            metrics.requests.labels(label, str(status["code"])).inc()
            metrics.http_seconds.labels(label).observe(time.perf_counter() - started)

    def _refusal(self, scope: dict[str, Any]) -> tuple[int, str, str] | None:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None:
            if b"transfer-encoding" in headers:
                return (
                    411,
                    "send a Content-Length (chunked request bodies are not accepted)",
                    "length_required",
                )
            return None
        if not length.isdigit():
            return 400, "Content-Length is not a number", "bad_length"
        if int(length) > self.settings.max_body_bytes:
            return (
                413,
                f"request body is {int(length)} bytes; at most {self.settings.max_body_bytes}",
                "body_too_large",
            )
        return None
