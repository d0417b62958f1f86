"""POST /v1/classify: labels with probabilities for one text or a list, batched with other requests' texts;
each text is logged with its own id for /v1/feedback."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serving.batcher import Overloaded
from tunesmith.serving.errors import ApiError, check_text
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
        if not texts:
            raise ApiError(422, "input is an empty list", "invalid_body")
        if len(texts) > settings.max_inputs:
            raise ApiError(
                413, f"{len(texts)} inputs; at most {settings.max_inputs} per request", "too_many_inputs"
            )
        for i, text in enumerate(texts):
            check_text(text, settings, f"input[{i}]")
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

    return routes
