"""POST /v1/classify: labels with probabilities for one text or a list, batched with other requests' texts
(what an item says is the task's: Task.classify_item; multi-label runs add the labels over their thresholds);
each text is logged with its own id for /v1/feedback."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serving.errors import check_inputs, paired_inputs
from tunesmith.serving.guard import require_key
from tunesmith.serving.schemas import ClassifyRequest
from tunesmith.serving.state import Server


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    settings = server.settings

    @routes.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        require_key(request, settings)
        served = server.model(body.model, "classify")
        texts = body.texts()
        check_inputs(texts, settings)
        inputs = paired_inputs(texts, body.pairs(), served.trained.task.reads_pairs, settings)
        ranked, seconds = await server.batched(served, inputs, "classify")
        data = []
        for i, (text, scores) in enumerate(zip(inputs, ranked, strict=True)):
            item_id = f"cls-{uuid.uuid4()}"
            item = served.trained.task.classify_item(scores, body.top_k)
            decided = {k: v for k, v in item.items() if k not in ("confidence", "scores")}
            server.log_row(
                served,
                request_id=item_id,
                endpoint="classify",
                input=list(text) if isinstance(text, tuple) else text,
                output={**decided, "scores": dict(scores)},
                latency_ms=seconds * 1000,
                confidence=item["confidence"],
            )
            data.append({"index": i, "id": item_id, **item})
        return {"object": "list", "model": served.name, "version": served.version, "data": data}

    return routes
