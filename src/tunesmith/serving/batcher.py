"""Dynamic batching: concurrent requests for one model are gathered into one forward pass.

Whatever queued while the model was busy joins the next batch at once; a batch that is not full then waits
up to `wait_s` for more, but only while other requests are in flight (a lone client never waits: it has no
one to share a batch with). Under light load a request waits for nothing but the model; under heavy load
batches fill by themselves. Every model computes on one shared worker thread (one model at a time: on a CPU
each forward pass already uses every core, and adapter switching on a shared base needs it). A batch whose
forward pass raises is run again request by request, so only the request at fault gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any


class Overloaded(Exception):
    """The model's queue is full; the client should retry later (HTTP 503)."""


@dataclass
class _Pending:
    inputs: list[Any]
    future: asyncio.Future[list[Any]]


def settle(pending: Any, outputs: list[Any] | None = None, exc: Exception | None = None) -> None:
    """Hand a request (anything with a `future`) its outputs or its error, unless its client has gone."""
    if pending.future.done():  # a client that went away has cancelled its future
        return
    if exc is not None:
        pending.future.set_exception(exc)
    else:
        pending.future.set_result(outputs if outputs is not None else [])


class Batcher:
    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        executor: Executor,
        *,
        max_batch: int,
        wait_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.run = run
        self.executor = executor
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.queued_inputs = 0
        self.in_flight = 0
        """Requests submitted and not yet answered (queued or computing)."""
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, inputs: list[Any]) -> list[Any]:
        """`run`'s outputs for `inputs`, computed in a batch with whatever else is waiting."""
        if self.queued_inputs + len(inputs) > self.max_queue:
            raise Overloaded(f"{self.queued_inputs} inputs are waiting already")
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        pending = _Pending(inputs, asyncio.get_running_loop().create_future())
        self.queued_inputs += len(inputs)
        self.in_flight += 1
        self._queue.put_nowait(pending)
        try:
            return await pending.future
        finally:
            self.in_flight -= 1

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].inputs)
            while size < self.max_batch and not self._queue.empty():  # what queued while the model was busy
                batch.append(self._queue.get_nowait())
                size += len(batch[-1].inputs)
            deadline = loop.time() + (self.wait_s if self.in_flight > len(batch) else 0)
            while size < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
                size += len(batch[-1].inputs)
            await self._run(batch, size)

    async def _run(self, batch: list[_Pending], size: int) -> None:
        inputs = [x for pending in batch for x in pending.inputs]
        self.queued_inputs -= size
        if self.on_batch is not None:
            self.on_batch(size)
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, inputs)
        except Exception as exc:  # noqa: BLE001 - the worker goes on
            if len(batch) == 1:
                settle(batch[0], exc=exc)
                return
            for pending in batch:  # one request's bad input must not fail the others that shared the pass
                await self._run_alone(pending)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.inputs)
            settle(pending, outputs[start:end])
            start = end

    async def _run_alone(self, pending: _Pending) -> None:
        if pending.future.done():
            return
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.run, pending.inputs
            )
        except Exception as exc:  # noqa: BLE001 - this request's own failure, handed to it alone
            settle(pending, exc=exc)
            return
        settle(pending, outputs)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
