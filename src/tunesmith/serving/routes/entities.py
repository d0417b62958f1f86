"""POST /v1/entities: a token-classification run's entities for one text or a list, batched with other
requests' texts; each entity with its type, character offsets (end exclusive) and text. Each text is logged
with its own id."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serving.errors import check_inputs
from tunesmith.serving.guard import require_key
from tunesmith.serving.schemas import EntitiesRequest
from tunesmith.serving.state import Server


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    settings = server.settings

    @routes.post("/v1/entities")
    async def entities(body: EntitiesRequest, request: Request) -> dict[str, Any]:
        require_key(request, settings)
        served = server.model(body.model, "entities")
        texts = body.texts()
        check_inputs(texts, settings)
        found, seconds = await server.batched(served, texts, "entities")
        data = []
        for i, (text, items) in enumerate(zip(texts, found, strict=True)):
            item_id = f"ent-{uuid.uuid4()}"
            server.log_row(
                served,
                request_id=item_id,
                endpoint="entities",
                input=text,
                output={"entities": items},
                latency_ms=seconds * 1000,
            )
            data.append({"index": i, "id": item_id, "entities": items})
        return {"object": "list", "model": served.name, "version": served.version, "data": data}

    return routes
