"""POST /v1/embeddings, OpenAI-compatible: a unit-length vector for one text or a list, batched with other
requests' texts; each text is logged with its own id (for drift monitoring and /v1/feedback)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import torch
from fastapi import APIRouter, Request

from tunesmith.serving.errors import ApiError, check_inputs
from tunesmith.serving.guard import require_key
from tunesmith.serving.schemas import EmbeddingsRequest
from tunesmith.serving.state import Server


def encoded(vector: torch.Tensor, encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    settings = server.settings

    @routes.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        require_key(request, settings)
        served = server.model(body.model, "embeddings")
        texts = body.texts()
        check_inputs(texts, settings)
        width = served.engine.dimensions()
        if body.dimensions is not None and body.dimensions > width:
            raise ApiError(
                422, f"dimensions {body.dimensions}: the model's vectors have {width}", "invalid_body"
            )
        vectors, seconds = await server.batched(served, texts, "embeddings")
        tokens = sum(len(ids) for ids in served.trained.tokenizer(texts)["input_ids"])
        data = []
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            if body.dimensions is not None:  # Matryoshka: the leading dimensions, at unit length again
                vector = torch.nn.functional.normalize(vector[: body.dimensions], dim=-1)
            server.log_row(
                served,
                request_id=f"emb-{uuid.uuid4()}",
                endpoint="embeddings",
                input=text,
                output={"dimensions": int(vector.shape[0])},
                latency_ms=seconds * 1000,
            )
            data.append(
                {"object": "embedding", "index": i, "embedding": encoded(vector, body.encoding_format)}
            )
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "model": served.name, "data": data, "usage": usage}

    return routes
