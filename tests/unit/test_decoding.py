"""Continuous batching (decoding.DecodeBatch, serving/chat_batcher.ChatBatcher) on a real (tiny, randomly
initialised) Llama: answers decoded together, with requests joining and leaving at token boundaries, are the
answers each request gets alone; the key/value cache never outgrows its budget."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import tiny_llama, tiny_mistral
from tunesmith.decoding import DecodeBatch, Row, kv_bytes_per_token, token_room
from tunesmith.generation import GenerationSettings, generate
from tunesmith.serving.chat_batcher import ChatBatcher

STOP = 3
PAD = 0


def model():
    return tiny_llama(vocab_size=300, hidden_size=64, intermediate_size=96).eval()


def prompts(n: int = 16, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(4, 300) for _ in range(rng.randrange(2, 30))] for _ in range(n)]


def alone(lm, prompt: list[int], settings: GenerationSettings) -> list[int]:
    return generate(lm, [prompt], settings, pad_id=PAD, stop_ids=[STOP], batch_size=1)[0]


def decode_all(lm, rows: list[Row], cache_bytes: int = 2**30, max_rows: int = 8, every: int = 1):
    """Decode `rows`, letting in every `every` steps those next in line that fit together (prefilled in one
    pass); returns the largest cache seen."""
    batch = DecodeBatch(lm, stop_ids=[STOP], cache_bytes=cache_bytes, max_rows=max_rows)
    waiting, steps, largest = list(rows), 0, 0
    while waiting or batch.rows:
        if steps % every == 0:
            joining = waiting[: batch.fitting(waiting)]
            del waiting[: len(joining)]
            batch.join(joining)
        batch.step()
        steps += 1
        if batch.cache is not None:
            largest = max(largest, sum(x.keys.nbytes + x.values.nbytes for x in batch.cache.layers))
    return largest


def test_greedy_answers_decoded_together_are_the_answers_alone():
    lm = model()
    settings = [GenerationSettings(max_new_tokens=4 + (7 * i) % 20) for i in range(16)]
    want = [alone(lm, p, s) for p, s in zip(prompts(), settings, strict=True)]
    for every in (1, 3):  # all at once, and joining a running batch every third step
        rows = [Row(p, s) for p, s in zip(prompts(), settings, strict=True)]
        decode_all(lm, rows, every=every)
        assert [r.tokens for r in rows] == want
    assert any(len(w) < s.max_new_tokens for w, s in zip(want, settings, strict=True)), "no stop token met"


def test_rows_that_end_at_their_first_token_leave_a_joint_prefill_and_the_rest_decode_as_alone():
    lm = model()
    settings = [GenerationSettings(max_new_tokens=1 if i % 2 else 9) for i in range(6)]
    rows = [Row(p, s) for p, s in zip(prompts(6, seed=2), settings, strict=True)]
    batch = DecodeBatch(lm, stop_ids=[STOP], cache_bytes=2**30, max_rows=8)
    assert batch.fitting(rows) == 6
    ended = batch.join(rows)
    assert ended == rows[1::2] and batch.rows == rows[::2]
    assert batch.mask is not None and batch.mask.shape == (3, max(len(r.prompt) for r in rows[::2]))
    while batch.rows:
        batch.step()
    for row in rows:
        assert row.tokens == alone(lm, row.prompt, row.settings)


def test_each_row_keeps_its_sampling_settings_and_seed():
    lm = model()
    settings = [
        GenerationSettings(max_new_tokens=12, do_sample=True, temperature=0.7 + i / 10, top_p=0.9, seed=i)
        if i % 2
        else GenerationSettings(max_new_tokens=12, repetition_penalty=1.3)
        for i in range(8)
    ]
    rows = [Row(p, s) for p, s in zip(prompts(8, seed=1), settings, strict=True)]
    decode_all(lm, rows, every=2)
    again = [Row(p, s) for p, s in zip(prompts(8, seed=1), settings, strict=True)]
    decode_all(lm, again[::-1], every=1)  # other neighbours, other order: same answers
    assert [r.tokens for r in rows] == [r.tokens for r in again]
    for row in rows[::2]:  # greedy with a repetition penalty: what generate answers
        assert row.tokens == alone(lm, row.prompt, row.settings)
    sampled = [r.tokens for r in rows[1::2]]
    greedy = [alone(lm, r.prompt, GenerationSettings(max_new_tokens=12)) for r in rows[1::2]]
    assert sampled != greedy


def test_the_cache_stays_within_its_budget_and_a_full_batch_makes_room_as_rows_leave():
    lm = model()
    per_token = kv_bytes_per_token(lm)
    budget = 3 * 40 * per_token  # three rows of 40 tokens
    rows = [Row(p, GenerationSettings(max_new_tokens=10)) for p in prompts(12, seed=2)]
    largest = decode_all(lm, rows, cache_bytes=budget)
    assert 0 < largest <= budget
    assert all(r.tokens == alone(lm, r.prompt, r.settings) for r in rows)
    assert token_room(lm, budget) == 120
    batch = DecodeBatch(lm, stop_ids=[STOP], cache_bytes=budget, max_rows=8)
    assert batch.fits(100, 20) and not batch.fits(100, 21)  # alone: 120 tokens at most


def test_a_sliding_window_model_decodes_below_its_window():
    lm = tiny_mistral(
        window=48, vocab_size=300, hidden_size=64, intermediate_size=96, max_positions=4096 * 32
    ).eval()
    batch = DecodeBatch(lm, stop_ids=[STOP], cache_bytes=2**30, max_rows=8)
    assert batch.fits(30, 17) and not batch.fits(30, 18)  # 47 tokens: one below the window
    settings = [GenerationSettings(max_new_tokens=10) for _ in range(8)]
    rows = [Row(p, s) for p, s in zip(prompts(8, seed=3), settings, strict=True)]
    decode_all(lm, rows, every=2)
    assert [r.tokens for r in rows] == [alone(lm, r.prompt, r.settings) for r in rows]


class Served:
    """What ChatBatcher needs of a served model: its model, adapter switch and engine's batch."""

    def __init__(self, lm):
        self.trained = type("Trained", (), {"model": lm})()

    def activate(self) -> None:
        pass


class Observer:
    def __init__(self, stop_after: int | None = None):
        self.seen: list[int] = []
        self.stop_after = stop_after
        self.stopped = False

    def put(self, token: int) -> None:
        self.seen.append(token)
        self.stopped = self.stop_after is not None and len(self.seen) >= self.stop_after


def test_the_batcher_answers_concurrent_requests_as_each_alone_and_observers_stop_their_own():
    lm = model()
    served = Served(lm)
    sizes: list[int] = []
    settings = [GenerationSettings(max_new_tokens=4 + (5 * i) % 17) for i in range(16)]
    observers = [Observer(stop_after=3 if i == 5 else None) for i in range(16)]

    async def burst():
        with ThreadPoolExecutor(1) as executor:
            batcher = ChatBatcher(
                executor,
                lambda s: DecodeBatch(s.trained.model, stop_ids=[STOP], cache_bytes=2**30, max_rows=6),
                on_step=sizes.append,
            )
            calls = [
                batcher.submit(served, p, s, o)
                for p, s, o in zip(prompts(), settings, observers, strict=True)
            ]
            answers = await asyncio.gather(*calls)
            await batcher.close()
            return answers

    answers = asyncio.run(burst())
    want = [alone(lm, p, s) for p, s in zip(prompts(), settings, strict=True)]
    assert answers[5] == want[5][:3] == observers[5].seen
    assert [a for i, a in enumerate(answers) if i != 5] == [w for i, w in enumerate(want) if i != 5]
    assert all(o.seen == a for o, a in zip(observers, answers, strict=True))
    assert max(sizes) == 6 and len(sizes) < sum(len(a) for a in answers)  # steps were shared
