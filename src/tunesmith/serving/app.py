"""The HTTP API (FastAPI):

    GET  /health                       liveness and the served versions (no key needed)
    GET  /v1/models                    served models (OpenAI shape, plus version, task, endpoint and whether
                                       the run holds its fine-tuned model or the base model, `holds`)
    POST /v1/chat/completions          OpenAI-compatible chat, streaming by server-sent events
    POST /v1/classify                  labels with probabilities for one text or a list
    POST /v1/feedback                  a correction for a logged request (right label / better answer)
    GET  /metrics                      Prometheus text format
    GET  /v1/admin/models/{name}/versions, POST /v1/admin/models/{name}/version, POST /v1/admin/reload

Every error is a JSON body in OpenAI's shape with a 4xx status for bad input (401 key, 404 model, 411/413
size, 422 shape, type or text that is not valid Unicode, 503 queue full). A 500 is a server fault only: its
answer carries an id that the server log prints with the traceback, and /metrics counts it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import signal
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.errors import UserError
from tunesmith.generation import GenerationSettings
from tunesmith.monitoring.request_log import default_url, encode_row, open_logs
from tunesmith.recipes.predict import predict_texts
from tunesmith.serving.batcher import Batcher, Overloaded
from tunesmith.serving.metrics import Metrics
from tunesmith.serving.pool import ModelPool, ServedModel
from tunesmith.serving.schemas import (
    ChatRequest,
    ClassifyRequest,
    FeedbackRequest,
    VersionRequest,
    error_body,
)
from tunesmith.serving.settings import ServeSettings
from tunesmith.serving.text_stream import TextStream


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


class Server:
    """What the endpoints share: the models, their batchers, the request logs, the metrics."""

    def __init__(self, pool: ModelPool, settings: ServeSettings):
        self.pool = pool
        self.settings = settings
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tunesmith-model")
        urls = {name: settings.log_url or default_url(d.root) for name, d in pool.runs.items()}
        opened = open_logs(urls.values())  # one log per URL, however many runs share it
        self.logs = {name: opened[url] for name, url in urls.items()}
        self.metrics = Metrics(self.state)
        self.batchers = {
            name: Batcher(
                self._classify_batch,
                self.executor,
                max_batch=settings.batch_size,
                wait_s=settings.batch_wait_ms / 1000,
                max_queue=settings.max_queue,
                on_batch=lambda n, name=name: self.metrics.batch_inputs.labels(name).observe(n),
            )
            for name in pool.runs
        }
        self.chats_waiting = dict.fromkeys(pool.runs, 0)
        self.switched = asyncio.Event()

    def state(self) -> dict[str, Any]:
        queued = {n: b.queued_inputs + self.chats_waiting[n] for n, b in self.batchers.items()}
        pending = sum(log.pending() for log in set(self.logs.values()))
        return {"models": dict(self.pool.models), "queued": queued, "log_pending": pending}

    def model(self, name: str | None, endpoint: str) -> ServedModel:
        """The served model a request names; with one model served, a request may leave `model` out."""
        if name is None:
            if len(self.pool.models) != 1:
                known = ", ".join(sorted(self.pool.models))
                raise ApiError(
                    422, f"model: required when several models are served ({known})", "invalid_body"
                )
            name = next(iter(self.pool.models))
        served = self.pool.get(name)
        if served is None:
            known = ", ".join(sorted(self.pool.models))
            raise ApiError(404, f"no model named {name!r} is served here; served: {known}", "model_not_found")
        if served.endpoint != endpoint:
            raise ApiError(
                400,
                f"model {name!r} is a {served.trained.task.name} model; it answers {_ENDPOINTS[served.endpoint]}",
                "wrong_endpoint",
            )
        return served

    def log_row(self, served: ServedModel, **row: Any) -> None:
        self.logs[served.name].record(
            encode_row(run=served.root, model=served.name, version=served.version, **row)
        )

    def chat_done(
        self,
        served: ServedModel,
        completion_id: str,
        messages: list[dict[str, str]],
        text: str,
        usage: dict[str, int],
        seconds: float,
    ) -> None:
        """Time and log a finished chat completion (streamed or not)."""
        self.metrics.inference_seconds.labels(served.name, "chat").observe(seconds)
        self.log_row(
            served,
            request_id=completion_id,
            endpoint="chat",
            input=messages,
            output=text,
            latency_ms=seconds * 1000,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )

    # --- model work (on the worker thread) ---
    @staticmethod
    def _classify_batch(items: list[tuple[ServedModel, str]]) -> list[list[tuple[str, float]]]:
        out: list[Any] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (served, _) in enumerate(items):
            groups.setdefault(id(served), []).append(i)
        for idx in groups.values():
            served = items[idx[0]][0]
            served.activate()
            ranked = predict_texts(served.trained, [items[i][1] for i in idx], batch_size=len(idx))
            for i, result in zip(idx, ranked, strict=True):
                out[i] = result
        return out

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def apply_switches(self) -> list[str]:
        """Load and serve whatever version serving.json now names; returns what changed."""
        changed = []
        for name, version in self.pool.pending_switches().items():
            await self.in_worker(self.pool.switch, name, version)
            changed.append(f"{name} -> {version}")
        return changed

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        self.executor.shutdown(wait=True)
        logs = set(self.logs.values())
        for log in logs:
            log.close()  # drains the writer's queue
        written, failed = sum(log.written for log in logs), sum(log.failed for log in logs)
        lost = f", {failed} could not be written" if failed else ""
        print(f"tunesmith serve: stopped; {written} requests logged since start{lost}", flush=True)


_ENDPOINTS = {
    "classify": "POST /v1/classify",
    "chat": "POST /v1/chat/completions",
    "none": "no endpoint here",
}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _key_matches(token: str, keys: list[str]) -> bool:
    """Constant time in the token: every key is compared, digests make the lengths equal."""
    given = _digest(token)
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, _digest(key))
    return found


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def build_app(pool: ModelPool, settings: ServeSettings) -> FastAPI:
    server = Server(pool, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with suppress(ValueError, NotImplementedError, RuntimeError):  # not in the main thread (tests)
            loop.add_signal_handler(signal.SIGHUP, server.switched.set)
        watcher = loop.create_task(_watch(server))
        yield
        watcher.cancel()
        await server.close()

    app = FastAPI(title="tunesmith", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    def require_key(request: Request) -> None:
        if settings.auth and not _key_matches(_bearer(request), settings.api_keys):
            raise ApiError(401, "missing or wrong API key: send Authorization: Bearer KEY", "invalid_api_key")

    def require_admin(request: Request) -> None:
        if not settings.auth:
            return
        if not settings.admin_keys:
            raise ApiError(
                403, "admin endpoints are off: start the server with --admin-key-file", "admin_disabled"
            )
        if not _key_matches(_bearer(request), settings.admin_keys):
            raise ApiError(401, "missing or wrong admin key", "invalid_api_key")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.code), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the body is checked before the endpoint runs: a caller without a key learns that first, not more
        if settings.auth and not _key_matches(_bearer(request), (*settings.api_keys, *settings.admin_keys)):
            return JSONResponse(
                error_body(
                    "missing or wrong API key: send Authorization: Bearer KEY",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
                status_code=401,
            )
        problems = []
        if "json" not in request.headers.get("content-type", ""):
            problems.append("send the body as JSON with Content-Type: application/json")
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()) if _field_part(p)) or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid').removeprefix('Value error, ')}")
        return JSONResponse(
            error_body("invalid request: " + "; ".join(problems), "invalid_request_error", "invalid_body"),
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        error_id = f"err-{uuid.uuid4()}"
        _log_fault(error_id, request.url.path, exc)
        request.scope["tunesmith.logged"] = True
        message = f"internal server error ({error_id}); the server log has its details"
        return JSONResponse(error_body(message, "server_error", "internal_error"), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error", f"http_{exc.status_code}"),
            status_code=exc.status_code,
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        models = {n: {"version": m.version, "endpoint": m.endpoint} for n, m in pool.models.items()}
        return {"status": "ok", "models": models}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        require_key(request)
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        require_key(request)
        return {"object": "list", "data": [_model_card(pool, name) for name in pool.models]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        require_key(request)
        if pool.get(name) is None:
            raise ApiError(404, f"no model named {name!r} is served here", "model_not_found")
        return _model_card(pool, name)

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        require_key(request)
        served = server.model(body.model, "classify")
        texts = body.texts()
        if not texts:
            raise ApiError(422, "input is an empty list", "invalid_body")
        if len(texts) > settings.max_inputs:
            raise ApiError(
                413, f"{len(texts)} inputs; at most {settings.max_inputs} per request", "too_many_inputs"
            )
        for i, text in enumerate(texts):
            _check_text(text, settings, f"input[{i}]")
        started = time.perf_counter()
        try:
            ranked = await server.batchers[served.name].submit([(served, t) for t in texts])
        except Overloaded as exc:
            raise ApiError(503, f"model {served.name} is busy ({exc}); retry shortly", "overloaded") from None
        seconds = time.perf_counter() - started
        server.metrics.inference_seconds.labels(served.name, "classify").observe(seconds)
        data = []
        for i, (text, scores) in enumerate(zip(texts, ranked, strict=True)):
            item_id = f"cls-{uuid.uuid4()}"
            label, confidence = scores[0]
            server.log_row(
                served,
                request_id=item_id,
                endpoint="classify",
                input=text,
                output={"label": label, "scores": dict(scores)},
                latency_ms=seconds * 1000,
                confidence=confidence,
            )
            shown = scores[: body.top_k] if body.top_k else scores
            data.append(
                {
                    "index": i,
                    "id": item_id,
                    "label": label,
                    "confidence": confidence,
                    "scores": [{"label": name, "score": p} for name, p in shown],
                }
            )
        return {"object": "list", "model": served.name, "version": served.version, "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        require_key(request)
        served = server.model(body.model, "chat")
        messages = []
        for i, message in enumerate(body.messages):
            text = message.text()
            _check_text(text, settings, f"messages[{i}].content")
            role = "system" if message.role == "developer" else message.role
            messages.append({"role": role, "content": text})
        if len(body.stops()) > 4:
            raise ApiError(422, "stop: at most 4 sequences", "invalid_body")
        task = served.trained.task
        prompt = task.prompt_ids(messages)
        generation = _generation_settings(task.params.generation, body, settings)
        if server.chats_waiting[served.name] >= settings.max_queue:
            raise ApiError(503, f"model {served.name} is busy; retry shortly", "overloaded")
        completion_id = f"chatcmpl-{uuid.uuid4()}"
        if body.stream:
            return StreamingResponse(
                _stream(server, served, completion_id, messages, prompt, generation, body),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        started = time.perf_counter()
        stream = TextStream(served.trained.tokenizer, body.stops())
        tokens = await _generate(server, served, prompt, generation, stream)
        text = stream.finish()
        seconds = time.perf_counter() - started
        finish = _finish_reason(stream, tokens, generation)
        usage = _usage(prompt, tokens)
        server.chat_done(served, completion_id, messages, text, usage, seconds)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served.name,
            "system_fingerprint": f"{served.name}@{served.version}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        require_key(request)
        loop = asyncio.get_running_loop()
        found = None
        for log in set(server.logs.values()):
            await loop.run_in_executor(None, log.flush)  # the request may still be on the writer's queue
            row = await loop.run_in_executor(None, log.find, body.id)
            if row is not None:
                found = (log, row)
                break
        if found is None:
            raise ApiError(404, f"no logged request with id {body.id!r}", "request_not_found")
        log, row = found
        if row["endpoint"] == "classify":
            if body.label is None:
                raise ApiError(422, f"{body.id} was a classification: send the right label", "invalid_body")
            served = pool.get(row["model"])
            labels = served.trained.task.labels if served is not None else None
            if labels is not None and body.label not in labels:
                raise ApiError(
                    422, f"unknown label {body.label!r}; labels: {', '.join(labels)}", "unknown_label"
                )
        elif body.answer is None:
            raise ApiError(422, f"{body.id} was a chat completion: send a better answer", "invalid_body")
        if body.answer is not None:
            _check_text(body.answer, settings, "answer")
        feedback_id = await loop.run_in_executor(
            None, log.add_feedback, body.id, body.label, body.answer, body.note
        )
        return {"object": "feedback", "id": feedback_id, "request_id": body.id, "model": row["model"]}

    @app.get("/v1/admin/models/{name}/versions")
    async def versions(name: str, request: Request) -> dict[str, Any]:
        require_admin(request)
        served = _served_or_404(pool, name)
        state = served.deployment.state()
        return {"model": name, "serving": served.version, "versions": served.deployment.versions(), **state}

    @app.post("/v1/admin/models/{name}/version")
    async def set_version(name: str, body: VersionRequest, request: Request) -> dict[str, Any]:
        require_admin(request)
        served = _served_or_404(pool, name)
        try:
            served.deployment.serve(body.version, reason="admin endpoint")
        except UserError as exc:
            raise ApiError(404, str(exc), "version_not_found") from None
        await server.apply_switches()
        return {"model": name, "serving": pool.models[name].version}

    @app.post("/v1/admin/reload")
    async def reload(request: Request) -> dict[str, Any]:
        require_admin(request)
        return {"changed": await server.apply_switches()}

    return _Guard(app, settings, server)


def _served_or_404(pool: ModelPool, name: str) -> ServedModel:
    served = pool.get(name)
    if served is None:
        raise ApiError(404, f"no model named {name!r} is served here", "model_not_found")
    return served


def _model_card(pool: ModelPool, name: str) -> dict[str, Any]:
    served = pool.models[name]
    card = {
        "id": name,
        "object": "model",
        "created": int(served.loaded_at),
        "owned_by": "tunesmith",
        "version": served.version,
        "task": served.trained.task.name,
        "endpoint": _ENDPOINTS[served.endpoint],
        "base_model": served.trained.config.model.name,
        "method": served.trained.config.method.name,
        "holds": served.trained.run.holds(),
        "shares_base_with": pool.shared_with(name),
    }
    if served.endpoint == "classify":
        card["labels"] = list(served.trained.task.labels)
    return card


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _field_part(part: Any) -> bool:
    """Whether a part of a pydantic error location names a field or an index, not the body or a member of
    a union (`str`, `list[TextPart]`, `function-after[...]`)."""
    if isinstance(part, int):
        return True
    return part != "body" and part.isidentifier() and part.lower() not in _TYPE_TAGS


def _check_text(text: str, settings: ServeSettings, where: str) -> None:
    if len(text) > settings.max_input_chars:
        raise ApiError(
            413, f"{where} is {len(text)} characters; at most {settings.max_input_chars}", "input_too_long"
        )
    if not text.strip():
        raise ApiError(422, f"{where} is empty", "invalid_body")


def _generation_settings(
    run: GenerationSettings, body: ChatRequest, settings: ServeSettings
) -> GenerationSettings:
    wanted = body.max_completion_tokens or body.max_tokens or run.max_new_tokens
    values: dict[str, Any] = {
        "max_new_tokens": min(wanted, settings.max_tokens),
        "repetition_penalty": run.repetition_penalty,
        "seed": body.seed if body.seed is not None else run.seed,
    }
    if body.temperature is None:  # the run's own settings, beams excepted (they cannot stream)
        values.update(do_sample=run.do_sample, temperature=run.temperature, top_p=body.top_p or run.top_p)
    elif body.temperature == 0:
        values.update(do_sample=False)
    else:
        values.update(do_sample=True, temperature=body.temperature, top_p=body.top_p or 1.0)
        if body.seed is None:  # as OpenAI's API: sampling without a seed differs from call to call
            values["seed"] = secrets.randbelow(2**31)
    return GenerationSettings(**values)


async def _generate(
    server: Server, served: ServedModel, prompt: list[int], generation: GenerationSettings, stream: TextStream
) -> list[int]:
    def work() -> list[int]:
        served.activate()
        task, trained = served.trained.task, served.trained
        return task.generate_tokens(trained.model, [prompt], 1, trained.pad_id, generation, stream)[0]

    server.chats_waiting[served.name] += 1
    try:
        return await server.in_worker(work)
    finally:
        server.chats_waiting[served.name] -= 1


def _finish_reason(stream: TextStream, tokens: list[int], generation: GenerationSettings) -> str:
    if stream.hit_stop:
        return "stop"
    return "length" if len(tokens) >= generation.max_new_tokens else "stop"


def _usage(prompt: list[int], tokens: list[int]) -> dict[str, int]:
    return {
        "prompt_tokens": len(prompt),
        "completion_tokens": len(tokens),
        "total_tokens": len(prompt) + len(tokens),
    }


async def _stream(
    server: Server,
    served: ServedModel,
    completion_id: str,
    messages: list[dict[str, str]],
    prompt: list[int],
    generation: GenerationSettings,
    body: ChatRequest,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `data: [DONE]`."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    stream = TextStream(
        served.trained.tokenizer, body.stops(), lambda s: loop.call_soon_threadsafe(pieces.put_nowait, s)
    )
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served.name,
            "system_fingerprint": f"{served.name}@{served.version}",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    started = time.perf_counter()
    generating = asyncio.ensure_future(_generate(server, served, prompt, generation, stream))
    generating.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece the worker sent
    try:
        yield chunk({"role": "assistant", "content": ""})
        while (piece := await pieces.get()) is not None:
            yield chunk({"content": piece})
        tokens = generating.result()
        stream.emit = None  # from here on this coroutine sends the rest itself
        sent = stream.sent
        text = stream.finish()
        if len(text) > sent:
            yield chunk({"content": text[sent:]})
        usage = _usage(prompt, tokens)
        yield chunk({}, _finish_reason(stream, tokens, generation))
        if body.stream_options is not None and body.stream_options.include_usage:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": served.name,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(payload)}\n\n"
        yield "data: [DONE]\n\n"
        server.chat_done(served, completion_id, messages, text, usage, time.perf_counter() - started)
    finally:
        stream.cancel()  # a client that left stops the generation at its next token


async def _watch(server: Server) -> None:
    """Swap in promoted or rolled-back versions: every watch_seconds, or at once on SIGHUP."""
    while True:
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.switched.wait(), server.settings.watch_seconds)
        server.switched.clear()
        try:
            for change in await server.apply_switches():
                print(f"tunesmith serve: now serving {change}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a broken version must not stop the server
            print(f"tunesmith serve: version switch failed, still serving the old one: {exc}", flush=True)


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


def _log_fault(error_id: str, path: str, exc: BaseException) -> None:
    """A server fault, on stderr with its traceback and the id its 500 answer carries."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    print(f"tunesmith serve: {error_id} {path} failed:\n{''.join(lines)}", file=sys.stderr, flush=True)


class _Guard:
    """ASGI wrapper around the app: refuses oversize bodies before they are read (413; 411 without a
    length), and counts every response by path and status for /metrics."""

    KNOWN = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/classify", "/v1/feedback")

    def __init__(self, app: FastAPI, settings: ServeSettings, server: Server):
        self.app = app
        self.settings = settings
        self.server = server

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
                _log_fault(f"err-{uuid.uuid4()}", path, exc)
            if status["code"] == 500 and not status.get("sent"):
                body = error_body("internal server error; the server log has its details", "server_error")
                await JSONResponse(body, status_code=500)(scope, receive, counted)
        finally:
            metrics = self.server.metrics
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
