"""POST /v1/feedback: a correction for a logged request (the right label or labels, the right number, a better
answer) or a rating of a chat answer (thumbs up or down), kept in the request log for `tunesmith retune`. What
a correction must be is the served model's task's to say (Task.correction_refusal)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serving.errors import ApiError, check_text
from tunesmith.serving.guard import require_key
from tunesmith.serving.schemas import FeedbackRequest
from tunesmith.serving.state import Server


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    pool, settings = server.pool, server.settings

    @routes.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        require_key(request, settings)
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
        served = pool.get(row["model"])
        correction, answer = body.correction(), body.answer
        if served is not None:
            why = served.trained.task.correction_refusal(correction, row["input"])
            if why:
                raise ApiError(422, f"{body.id}: {why}", "invalid_body")
            answer = served.trained.task.stored_answer(correction)
        elif body.entities is not None:
            raise ApiError(
                409,
                f"{body.id}: its model is no longer served, so its entities cannot be checked",
                "not_served",
            )
        if body.answer is not None:
            check_text(body.answer, settings, "answer")
        feedback_id = await loop.run_in_executor(
            None, log.add_feedback, body.id, body.label, answer, body.note, body.rating
        )
        return {"object": "feedback", "id": feedback_id, "request_id": body.id, "model": row["model"]}

    return routes
