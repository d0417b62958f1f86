"""POST /v1/score: a regression run's number for one text or a list, batched with other requests' texts, in
the target's units; each text is logged with its own id, so /v1/feedback can send the right value (`label`:
a number) for a retune."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serving.errors import check_inputs, paired_inputs
from tunesmith.serving.guard import require_key
from tunesmith.serving.schemas import ScoreRequest
from tunesmith.serving.state import Server


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    settings = server.settings

    @routes.post("/v1/score")
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        require_key(request, settings)
        served = server.model(body.model, "score")
        texts = body.texts()
        check_inputs(texts, settings)
        inputs = paired_inputs(texts, body.pairs(), served.trained.task.reads_pairs, settings)
        scores, seconds = await server.batched(served, inputs, "score")
        data = []
        for i, (text, value) in enumerate(zip(inputs, scores, strict=True)):
            item_id = f"scr-{uuid.uuid4()}"
            server.log_row(
                served,
                request_id=item_id,
                endpoint="score",
                input=list(text) if isinstance(text, tuple) else text,
                output={"score": value},
                latency_ms=seconds * 1000,
            )
            data.append({"index": i, "id": item_id, "score": value})
        return {
            "object": "list",
            "model": served.name,
            "version": served.version,
            "target": served.trained.task.labels[0],
            "data": data,
        }

    return routes
