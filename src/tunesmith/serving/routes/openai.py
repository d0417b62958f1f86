"""The OpenAI-compatible endpoints: GET /v1/models, GET /v1/models/{name}, POST /v1/chat/completions (whole
or streamed as server-sent events), so that OpenAI's own clients work unchanged."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tunesmith.generation import GenerationSettings
from tunesmith.serving.errors import ApiError, check_text
from tunesmith.serving.guard import require_key
from tunesmith.serving.pool import ServedModel
from tunesmith.serving.responses import Completion, finish_reason, model_card, usage
from tunesmith.serving.schemas import ChatRequest
from tunesmith.serving.settings import ServeSettings
from tunesmith.serving.state import Server
from tunesmith.serving.text_stream import TextStream


def router(server: Server) -> APIRouter:
    routes = APIRouter()
    pool, settings = server.pool, server.settings

    @routes.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        require_key(request, settings)
        return {"object": "list", "data": [model_card(pool, name) for name in pool.models]}

    @routes.get("/v1/models/{name}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        require_key(request, settings)
        server.served_or_404(name)
        return model_card(pool, name)

    @routes.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        require_key(request, settings)
        served = server.model(body.model, "chat")
        messages = _messages(body, settings)
        task = served.trained.task
        prompt = task.prompt_ids(messages)
        generation = _fitted(
            served, len(prompt), _generation_settings(task.params.generation, body, settings)
        )
        if server.chats_waiting[served.name] >= settings.max_queue:
            raise ApiError(503, f"model {served.name} is busy; retry shortly", "overloaded")
        completion = Completion(served, f"chatcmpl-{uuid.uuid4()}")
        if body.stream:
            return StreamingResponse(
                _stream(server, completion, messages, prompt, generation, body),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        started = time.perf_counter()
        stream = TextStream(served.trained.tokenizer, body.stops())
        tokens = await server.chat_tokens(served, prompt, generation, stream)
        text = stream.finish()
        used = usage(prompt, tokens)
        server.chat_done(served, completion.id, messages, text, used, time.perf_counter() - started)
        return completion.whole(text, finish_reason(stream, tokens, generation), used)

    return routes


def _messages(body: ChatRequest, settings: ServeSettings) -> list[dict[str, str]]:
    """The conversation as the chat template takes it (OpenAI's `developer` role is a system message)."""
    messages = []
    for i, message in enumerate(body.messages):
        text = message.text()
        check_text(text, settings, f"messages[{i}].content")
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": text})
    if len(body.stops()) > 4:
        raise ApiError(422, "stop: at most 4 sequences", "invalid_body")
    return messages


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


def _fitted(served: ServedModel, prompt_tokens: int, generation: GenerationSettings) -> GenerationSettings:
    """The settings with max_new_tokens cut to what fits after the prompt in the engine's context."""
    room = served.engine.room(prompt_tokens)
    if room is None:
        return generation
    if room <= 0:
        raise ApiError(
            400,
            f"the conversation is {prompt_tokens} tokens; {served.name} is served with room for "
            f"{prompt_tokens + room} tokens of prompt and answer together (serve setting {served.engine.room_setting})",
            "context_length_exceeded",
        )
    return generation.model_copy(update={"max_new_tokens": min(generation.max_new_tokens, room)})


async def _stream(
    server: Server,
    completion: Completion,
    messages: list[dict[str, str]],
    prompt: list[int],
    generation: GenerationSettings,
    body: ChatRequest,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `data: [DONE]`."""
    served = completion.served
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    stream = TextStream(
        served.trained.tokenizer, body.stops(), lambda s: loop.call_soon_threadsafe(pieces.put_nowait, s)
    )
    started = time.perf_counter()
    generating = asyncio.ensure_future(server.chat_tokens(served, prompt, generation, stream))
    generating.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece the worker sent
    try:
        yield completion.chunk({"role": "assistant", "content": ""})
        while (piece := await pieces.get()) is not None:
            yield completion.chunk({"content": piece})
        tokens = generating.result()
        stream.emit = None  # from here on this coroutine sends the rest itself
        sent = stream.sent
        text = stream.finish()
        if len(text) > sent:
            yield completion.chunk({"content": text[sent:]})
        used = usage(prompt, tokens)
        yield completion.chunk({}, finish_reason(stream, tokens, generation))
        if body.stream_options is not None and body.stream_options.include_usage:
            yield completion.usage_chunk(used)
        yield "data: [DONE]\n\n"
        server.chat_done(served, completion.id, messages, text, used, time.perf_counter() - started)
    finally:
        stream.cancel()  # a client that left stops the generation at its next token
