"""The bodies the API answers with, each built in one place: OpenAI's chat completion and its streamed
chunks, token usage, finish reasons, and the model card of /v1/models."""

from __future__ import annotations

import json
import time
from typing import Any

from tunesmith.generation import GenerationSettings
from tunesmith.serving.pool import ModelPool, ServedModel
from tunesmith.serving.state import ENDPOINTS
from tunesmith.serving.text_stream import TextStream


class Completion:
    """One chat completion's id and creation time, and the bodies that carry it: whole or in chunks."""

    def __init__(self, served: ServedModel, completion_id: str):
        self.served = served
        self.id = completion_id
        self.created = int(time.time())

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.served.name}

    def _fingerprint(self) -> dict[str, str]:
        return {"system_fingerprint": f"{self.served.name}@{self.served.version}"}

    def whole(self, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
        """The non-streamed answer."""
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return {**self._head("chat.completion"), **self._fingerprint(), "choices": [choice], "usage": usage}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        """One server-sent event of a streamed answer."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        payload = {**self._head("chat.completion.chunk"), **self._fingerprint(), "choices": [choice]}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def usage_chunk(self, usage: dict[str, int]) -> str:
        """The last event when the client asked for usage (stream_options.include_usage)."""
        payload = {**self._head("chat.completion.chunk"), "choices": [], "usage": usage}
        return f"data: {json.dumps(payload)}\n\n"


def finish_reason(stream: TextStream, tokens: list[int], generation: GenerationSettings) -> str:
    if stream.hit_stop:
        return "stop"
    return "length" if len(tokens) >= generation.max_new_tokens else "stop"


def usage(prompt: list[int], tokens: list[int]) -> dict[str, int]:
    return {
        "prompt_tokens": len(prompt),
        "completion_tokens": len(tokens),
        "total_tokens": len(prompt) + len(tokens),
    }


def model_card(pool: ModelPool, name: str) -> dict[str, Any]:
    """/v1/models' entry for a served model: OpenAI's fields, then what it is and which version serves."""
    served = pool.models[name]
    card = {
        "id": name,
        "object": "model",
        "created": int(served.loaded_at),
        "owned_by": "tunesmith",
        "version": served.version,
        "task": served.trained.task.name,
        "endpoint": ENDPOINTS[served.endpoint],
        "base_model": served.trained.config.model.name,
        "method": served.trained.config.method.name,
        "holds": served.trained.run.holds(),
        "shares_base_with": pool.shared_with(name),
    }
    if served.endpoint == "classify":
        card["labels"] = list(served.trained.task.labels)
    card["engine"] = served.engine.label
    if served.endpoint == "embeddings":
        card["dimensions"] = served.engine.dimensions()
    return card
