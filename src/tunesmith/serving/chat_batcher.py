"""Continuous batching of one served chat model's completions: concurrent requests share each forward pass.

Requests queue here; between two decode steps, those waiting join the running batch (decoding.DecodeBatch:
they are prefilled together, then decode with the others) as long as the batch's key/value cache stays within its
budget (serve setting chat_cache_mb) and row limit (batch_size); the rest wait their turn, first come first
served. A request leaves at its own stop token, max_tokens, stop string or when its client goes away. Each
step is one job on the server's model thread, so other models' batches (and adapter switches on a shared
base) run between two steps. A version switch lets the running batch finish on the old version; requests for
the new one start when it has drained. A step that fails fails the requests in the batch, and the batcher
goes on with the next ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from tunesmith.decoding import DecodeBatch, Row
from tunesmith.generation import GenerationSettings, TokenObserver
from tunesmith.serving.batcher import settle


@dataclass
class _Waiting:
    served: Any
    row: Row
    future: asyncio.Future[list[int]]


class ChatBatcher:
    def __init__(
        self,
        executor: Executor,
        make_batch: Callable[[Any], DecodeBatch],
        *,
        on_step: Callable[[int], None] | None = None,
    ):
        self.executor = executor
        self.make_batch = make_batch
        """A fresh DecodeBatch for a served model (its engine's, with the server's limits)."""
        self.on_step = on_step
        self.waiting: deque[_Waiting] = deque()
        self.batch: DecodeBatch | None = None
        self.served: Any = None
        """The served model (version) the running batch decodes with."""
        self._running: dict[int, _Waiting] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def submit(
        self, served: Any, prompt: list[int], settings: GenerationSettings, observer: TokenObserver
    ) -> list[int]:
        """The answer's tokens (without the stop token), decoded in a batch with the model's other requests."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        waiting = _Waiting(
            served, Row(prompt, settings, observer), asyncio.get_running_loop().create_future()
        )
        self.waiting.append(waiting)
        self._wake.set()
        return await waiting.future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            joining = self._joining()
            if not joining and not self._running:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                admitted, finished = await loop.run_in_executor(self.executor, self._advance, joining)
            except Exception as exc:  # noqa: BLE001 - the batch's requests get the error; the batcher goes on
                let_in = [w for w in joining if w.row.ticket is not None]
                for waiting in [*self._running.values(), *let_in]:
                    settle(waiting, exc=exc)
                    if waiting in self.waiting:
                        self.waiting.remove(waiting)
                self._running.clear()
                self.batch = None
                continue
            for waiting in admitted:
                self.waiting.remove(waiting)
                self._running[id(waiting)] = waiting
            for row in finished:
                waiting = self._running.pop(id(row.ticket))
                settle(waiting, row.tokens)
            for waiting in self._running.values():  # a client gone: its row ends before the next step
                if waiting.future.done():
                    waiting.row.done = True

    def _joining(self) -> list[Any]:
        """The waiting requests that may join the running batch now (whether they fit is for the model thread,
        which knows the batch's width): the next ones in line for the batch's version."""
        while self.waiting and self.waiting[0].future.done():  # its client went away while it waited
            self.waiting.popleft()
        if not self.waiting:
            return []
        if not self._running:
            self.served = self.waiting[0].served
        return [w for w in self.waiting if w.served is self.served]

    def _advance(self, joining: list[_Waiting]) -> tuple[list[_Waiting], list[Row]]:
        """On the model thread: let in the requests that fit (in order, stopping at the first that does not),
        then one decode step. Returns the requests let in and the rows that finished."""
        self.served.activate()
        if self.batch is None or (not self.batch.rows and self.batch.model is not self.served.trained.model):
            self.batch = self.make_batch(self.served)
        batch = self.batch
        rows = [w.row for w in joining]
        admitted = joining[: batch.fitting(rows)]
        if joining and not admitted and not batch.rows:
            raise RuntimeError("a request larger than the whole key/value cache budget was let in")
        for waiting in admitted:
            waiting.row.ticket = waiting
        finished = batch.join(rows[: len(admitted)])  # those whose first token ended them
        if self.on_step is not None and batch.rows:
            self.on_step(len(batch.rows))
        finished += batch.step()
        return admitted, finished

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
