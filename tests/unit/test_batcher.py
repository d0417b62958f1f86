"""The serving batcher: a batch whose forward pass raises is run again request by request, so one request's
bad input fails only that request (serving/batcher.py)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tunesmith.serving.batcher import Batcher


def upper(texts: list[str]) -> list[str]:
    """The batch's work: fails on any text that says "boom", as a tokenizer fails on text it cannot take."""
    if any("boom" in t for t in texts):
        raise ValueError("cannot take boom")
    return [t.upper() for t in texts]


def test_one_bad_request_fails_alone_and_the_others_in_its_batch_are_answered():
    passes: list[int] = []

    async def burst():
        batcher = Batcher(
            upper,
            ThreadPoolExecutor(1),
            max_batch=64,
            wait_s=0.05,
            max_queue=100,
            on_batch=passes.append,
        )
        requests = [["a", "b"], ["boom"], ["c"], ["d", "boom too"], ["e"]]
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        await batcher.close()
        return answers

    answers = asyncio.run(burst())
    assert answers[0] == ["A", "B"] and answers[2] == ["C"] and answers[4] == ["E"]
    for failed in (answers[1], answers[3]):
        assert isinstance(failed, ValueError) and str(failed) == "cannot take boom"
    assert len(passes) < 5  # the requests did share a forward pass before it was split


def test_a_lone_request_that_fails_gets_its_error():
    async def one():
        batcher = Batcher(upper, ThreadPoolExecutor(1), max_batch=8, wait_s=0, max_queue=10)
        try:
            return await batcher.submit(["boom"])
        finally:
            await batcher.close()

    with pytest.raises(ValueError, match="cannot take boom"):
        asyncio.run(one())
