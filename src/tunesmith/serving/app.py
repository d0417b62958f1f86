"""The HTTP API (FastAPI):

    GET  /health                       liveness and the served versions (no key needed)
    GET  /v1/models                    served models (OpenAI shape, plus version, task, endpoint and whether
                                       the run holds its fine-tuned model or the base model, `holds`)
    POST /v1/chat/completions          OpenAI-compatible chat, streaming by server-sent events
    POST /v1/classify                  labels with probabilities for one text or a list
    POST /v1/embeddings                OpenAI-compatible sentence vectors for one text or a list
    POST /v1/feedback                  a correction for a logged request (right label / better answer)
    GET  /metrics                      Prometheus text format
    GET  /v1/admin/models/{name}/versions, POST /v1/admin/models/{name}/version, POST /v1/admin/reload

Every error is a JSON body in OpenAI's shape with a 4xx status for bad input (401 key, 404 model, 411/413
size, 422 shape, type or text that is not valid Unicode, 503 queue full). A 500 is a server fault only: its
answer carries an id that the server log prints with the traceback, and /metrics counts it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from tunesmith.serving.guard import Guard, install_error_handlers
from tunesmith.serving.pool import ModelPool
from tunesmith.serving.routes import admin, classify, embeddings, entities, feedback, openai, score
from tunesmith.serving.settings import ServeSettings
from tunesmith.serving.state import Server


def build_app(pool: ModelPool, settings: ServeSettings) -> Guard:
    """The ASGI app: the routers over one shared Server, its error handlers, and the guard around it all; on
    start it watches for version switches (and SIGHUP), on stop it drains the batchers and request logs."""
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
    install_error_handlers(app, settings)
    for family in (admin, openai, classify, score, entities, embeddings, feedback):
        app.include_router(family.router(server))
    return Guard(app, settings, server.metrics)


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
