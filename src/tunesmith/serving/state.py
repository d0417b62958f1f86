"""What the endpoints share: the served models, their batchers, the request logs, the metrics, and the one
worker thread that runs the models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tunesmith.generation import GenerationSettings, TokenObserver
from tunesmith.monitoring.request_log import default_url, encode_row, open_logs
from tunesmith.serving.batcher import Batcher, Overloaded
from tunesmith.serving.chat_batcher import ChatBatcher
from tunesmith.serving.errors import ApiError
from tunesmith.serving.metrics import Metrics
from tunesmith.serving.pool import ModelPool, ServedModel
from tunesmith.serving.settings import ServeSettings

ENDPOINTS = {
    "classify": "POST /v1/classify",
    "chat": "POST /v1/chat/completions",
    "embeddings": "POST /v1/embeddings",
    "score": "POST /v1/score",
    "entities": "POST /v1/entities",
    "none": "no endpoint here",
}
"""What a model of each Task.endpoint answers, as a message and the model card say it."""


class Server:
    """What the endpoints share: the models, their batchers, the request logs, the metrics."""

    def __init__(self, pool: ModelPool, settings: ServeSettings):
        self.pool = pool
        self.settings = settings
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tunesmith-model")
        urls = {name: settings.log_url or default_url(d.root) for name, d in pool.runs.items()}
        opened = open_logs(urls.values())  # one log per URL, however many runs share it
        self.logs = {name: opened[url] for name, url in urls.items()}
        self.metrics = Metrics(self.state)
        self.batchers = {
            name: Batcher(
                self._model_batch,
                self.executor,
                max_batch=settings.batch_size,
                wait_s=settings.batch_wait_ms / 1000,
                max_queue=settings.max_queue,
                on_batch=lambda n, name=name: self.metrics.batch_inputs.labels(name).observe(n),
            )
            for name in pool.runs
        }
        self.chat_batchers = {
            name: ChatBatcher(
                self.executor,
                lambda served: served.engine.decode_batch(settings.batch_size),
                on_step=lambda n, name=name: self.metrics.batch_inputs.labels(name).observe(n),
            )
            for name in pool.runs
        }
        self.chats_waiting = dict.fromkeys(pool.runs, 0)
        self.switched = asyncio.Event()

    def state(self) -> dict[str, Any]:
        queued = {n: b.queued_inputs + self.chats_waiting[n] for n, b in self.batchers.items()}
        pending = sum(log.pending() for log in set(self.logs.values()))
        return {"models": dict(self.pool.models), "queued": queued, "log_pending": pending}

    def model(self, name: str | None, endpoint: str) -> ServedModel:
        """The served model a request names; with one model served, a request may leave `model` out."""
        if name is None:
            if len(self.pool.models) != 1:
                known = ", ".join(sorted(self.pool.models))
                raise ApiError(
                    422, f"model: required when several models are served ({known})", "invalid_body"
                )
            name = next(iter(self.pool.models))
        served = self.pool.get(name)
        if served is None:
            known = ", ".join(sorted(self.pool.models))
            raise ApiError(404, f"no model named {name!r} is served here; served: {known}", "model_not_found")
        if served.endpoint != endpoint:
            raise ApiError(
                400,
                f"model {name!r} is a {served.trained.task.name} model; it answers {ENDPOINTS[served.endpoint]}",
                "wrong_endpoint",
            )
        return served

    async def batched(self, served: ServedModel, texts: list[Any], endpoint: str) -> tuple[list[Any], float]:
        """`texts` through the model's batcher (with other requests' texts): one output per text, and the
        seconds it took, queueing included (also observed in the metrics); a full queue is a 503."""
        started = time.perf_counter()
        try:
            outputs = await self.batchers[served.name].submit([(served, t) for t in texts])
        except Overloaded as exc:
            raise ApiError(503, f"model {served.name} is busy ({exc}); retry shortly", "overloaded") from None
        seconds = time.perf_counter() - started
        self.metrics.inference_seconds.labels(served.name, endpoint).observe(seconds)
        return outputs, seconds

    async def chat_tokens(
        self, served: ServedModel, prompt: list[int], generation: GenerationSettings, observer: TokenObserver
    ) -> list[int]:
        """A chat answer's tokens: decoded with the model's other chats in its continuous batch where its engine
        has one and the chat fits one (below a sliding attention window), else alone on the model thread."""
        self.chats_waiting[served.name] += 1
        try:
            alone_batch = served.engine.decode_batch(1)
            if alone_batch is not None and alone_batch.fits(len(prompt), generation.max_new_tokens):
                return await self.chat_batchers[served.name].submit(served, prompt, generation, observer)

            def alone() -> list[int]:
                served.activate()
                return served.engine.generate(prompt, generation, observer)

            return await self.in_worker(alone)
        finally:
            self.chats_waiting[served.name] -= 1

    def log_row(self, served: ServedModel, **row: Any) -> None:
        self.logs[served.name].record(
            encode_row(run=served.root, model=served.name, version=served.version, **row)
        )

    def chat_done(
        self,
        served: ServedModel,
        completion_id: str,
        messages: list[dict[str, str]],
        text: str,
        usage: dict[str, int],
        seconds: float,
    ) -> None:
        """Time and log a finished chat completion (streamed or not)."""
        self.metrics.inference_seconds.labels(served.name, "chat").observe(seconds)
        self.log_row(
            served,
            request_id=completion_id,
            endpoint="chat",
            input=messages,
            output=text,
            latency_ms=seconds * 1000,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )

    # --- model work (on the worker thread) ---
    @staticmethod
    def _model_batch(items: list[tuple[ServedModel, str]]) -> list[Any]:
        """One batch of inputs through their models, grouped by model: one answer each, the task's own
        (Task.serve_inputs)."""
        out: list[Any] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (served, _) in enumerate(items):
            groups.setdefault(id(served), []).append(i)
        for idx in groups.values():
            served = items[idx[0]][0]
            served.activate()
            results = served.engine.serve_inputs([items[i][1] for i in idx], len(idx))
            for i, result in zip(idx, results, strict=True):
                out[i] = result
        return out

    def served_or_404(self, name: str) -> ServedModel:
        served = self.pool.get(name)
        if served is None:
            raise ApiError(404, f"no model named {name!r} is served here", "model_not_found")
        return served

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def apply_switches(self) -> list[str]:
        """Load and serve whatever version serving.json now names; returns what changed."""
        changed = []
        for name, version in self.pool.pending_switches().items():
            await self.in_worker(self.pool.switch, name, version)
            changed.append(f"{name} -> {version}")
        return changed

    async def close(self) -> None:
        for batcher in [*self.batchers.values(), *self.chat_batchers.values()]:
            await batcher.close()
        self.executor.shutdown(wait=True)
        logs = set(self.logs.values())
        for log in logs:
            log.close()  # drains the writer's queue
        written, failed = sum(log.written for log in logs), sum(log.failed for log in logs)
        lost = f", {failed} could not be written" if failed else ""
        print(f"tunesmith serve: stopped; {written} requests logged since start{lost}", flush=True)
