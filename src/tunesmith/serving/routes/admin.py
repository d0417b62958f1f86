"""Operations: GET /health (no key), GET /metrics (Prometheus text), and the admin endpoints (admin key):
a model's versions, which one serves, and a reload of what serving.json names."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tunesmith.errors import UserError
from tunesmith.serving.errors import ApiError
from tunesmith.serving.guard import require_admin, require_key
from tunesmith.serving.schemas import VersionRequest
from tunesmith.serving.state import Server
from tunesmith.tracking.run_tracking import record_serving


def _say(text: str) -> None:
    print(f"tunesmith serve: {text}", file=sys.stderr, flush=True)


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    pool, settings = server.pool, server.settings

    @routes.get("/health")
    async def health() -> dict[str, Any]:
        models = {n: {"version": m.version, "endpoint": m.endpoint} for n, m in pool.models.items()}
        return {"status": "ok", "models": models}

    @routes.get("/metrics")
    async def metrics(request: Request) -> Response:
        require_key(request, settings)
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @routes.get("/v1/admin/models/{name}/versions")
    async def versions(name: str, request: Request) -> dict[str, Any]:
        require_admin(request, settings)
        served = server.served_or_404(name)
        state = served.deployment.state()
        return {"model": name, "serving": served.version, "versions": served.deployment.versions(), **state}

    @routes.post("/v1/admin/models/{name}/version")
    async def set_version(name: str, body: VersionRequest, request: Request) -> dict[str, Any]:
        require_admin(request, settings)
        served = server.served_or_404(name)
        try:
            served.deployment.serve(body.version, reason="admin endpoint")
        except UserError as exc:
            raise ApiError(404, str(exc), "version_not_found") from None
        await server.apply_switches()
        await asyncio.to_thread(record_serving, served.deployment, _say)
        return {"model": name, "serving": pool.models[name].version}

    @routes.post("/v1/admin/reload")
    async def reload(request: Request) -> dict[str, Any]:
        require_admin(request, settings)
        return {"changed": await server.apply_switches()}

    return routes
