"""Continuous batching for a causal LM: answers are decoded together, one forward pass per new token for the
whole batch, and a request joins or leaves the running batch at any token boundary.

The prompts joining at one token boundary are prefilled together in one forward pass, left-padded with their own
positions as `generate` does for a batch (one pass over many prompts runs the CPU's matrix products far better
than one per prompt), then their key/value cache is laid beside the batch's, left-padded to the same width; each
decode step feeds every row's last token with its own position and attention mask, as `generate` does for a
left-padded batch. A row leaves when it makes a stop token, reaches its max_new_tokens or its observer stops it
(a stop string, a client that left); its cache rows are dropped, and columns that only padding fills any more
are cut. Each row keeps its own sampling settings (temperature, top-p, repetition penalty) and its own seeded
generator, so a sampled answer does not depend on what else was in the batch.

The key/value memory is bounded: `fits` says whether a request can join without the batch's cache ever
growing past `cache_bytes` (rows x the widest row's final length, padding included).

Causal LMs with the plain dynamic cache only (what `generate` uses for them); a sliding-window layer is
kept below its window, where it is a plain layer (`fits` refuses a request that would reach it: the server
then decodes it alone, as `generate` does). Encoder-decoders and prompt-learning models decode one
at a time (generation.generate)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tunesmith.generation import GenerationSettings, TokenObserver


def kv_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes of key/value cache one token takes in `model` (every layer, keys and values)."""
    config = model.config.get_text_config()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    size = torch.finfo(next(model.parameters()).dtype).bits // 8
    return 2 * config.num_hidden_layers * heads * head_dim * size


def token_room(model: torch.nn.Module, cache_bytes: int) -> int:
    """Most tokens (prompt and answer) one request may take in a cache of `cache_bytes`."""
    return cache_bytes // kv_bytes_per_token(model)


def sliding_window(model: torch.nn.Module) -> int | None:
    """The smallest sliding window of `model`'s attention layers, or None when every layer sees everything."""
    config = model.config.get_text_config()
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window is None or (types is not None and "sliding_attention" not in types):
        return None
    return int(window)


@dataclass
class Row:
    """One request in the batch."""

    prompt: list[int]
    settings: GenerationSettings
    observer: TokenObserver | None = None
    ticket: Any = None
    """The caller's handle for the request (handed back when the row finishes)."""
    tokens: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    processors: Any = None
    done: bool = False

    @property
    def remaining(self) -> int:
        return self.settings.max_new_tokens - len(self.tokens)


class DecodeBatch:
    def __init__(
        self,
        model: torch.nn.Module,
        *,
        stop_ids: Sequence[int],
        cache_bytes: int,
        max_rows: int,
    ):
        self.model = model
        self.stop_ids = set(stop_ids)
        self.cache_bytes = cache_bytes
        self.max_rows = max_rows
        self.token_bytes = kv_bytes_per_token(model)
        self.window = sliding_window(model)
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        """[rows, width]: 1 where a row has a token, 0 on its left padding."""
        self.last: torch.Tensor | None = None
        """[rows, 1]: each row's newest token, fed at the next step."""

    @property
    def width(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def fits(self, prompt_tokens: int, max_new_tokens: int) -> bool:
        """Can a request this long join now without the cache ever outgrowing its budget (or a sliding window)?"""
        return self._fitting([(prompt_tokens, max_new_tokens)]) == 1

    def fitting(self, rows: Sequence[Row]) -> int:
        """How many of `rows`, taken in order, can join now together (see `fits`)."""
        return self._fitting([(len(r.prompt), r.settings.max_new_tokens) for r in rows])

    def _fitting(self, requests: Sequence[tuple[int, int]]) -> int:
        width, longest = self.width, max((r.remaining for r in self.rows), default=0)
        for count, (prompt_tokens, max_new_tokens) in enumerate(requests):
            width, longest = max(width, prompt_tokens), max(longest, max_new_tokens)
            rows, final = len(self.rows) + count + 1, width + longest
            too_wide = self.window is not None and final >= self.window
            if rows > self.max_rows or too_wide or rows * final * self.token_bytes > self.cache_bytes:
                return count
        return len(requests)

    def join(self, rows: Sequence[Row]) -> list[Row]:
        """Prefill `rows`' prompts in one forward pass (left-padded, with their own positions, as `generate` does
        for a batch) and give each its first token; they decode with the batch from the next step. Returns the
        rows whose first token already ended them (they do not join). Runs the model: call on the model's thread."""
        if not rows:
            return []
        model = self.model
        device = next(model.parameters()).device
        for row in rows:
            row.processors = _processors(model, row.settings)
            if row.settings.do_sample:
                row.generator = torch.Generator(device=device).manual_seed(row.settings.seed)
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        width = max(len(r.prompt) for r in rows)  # left padding: token 0, masked out
        ids = torch.tensor([[0] * (width - len(r.prompt)) + r.prompt for r in rows], device=device)
        mask = torch.tensor(
            [[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows], device=device
        )
        with torch.inference_mode():
            logits = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        for i, row in enumerate(rows):
            self._take(row, self._pick(row, logits[i]))
        keep = [i for i, r in enumerate(rows) if not r.done]
        if keep:
            if len(keep) < len(rows):
                cache.batch_select_indices(torch.tensor(keep, device=device))
            mask = _cut_padding(cache, mask[keep])
            self._lay_beside(cache, mask, ids.new_tensor([[rows[i].tokens[-1]] for i in keep]))
            self.rows += [rows[i] for i in keep]
        return [r for r in rows if r.done]

    def step(self) -> list[Row]:
        """One new token for every row; returns the rows that finished (removed from the batch)."""
        finished = [r for r in self.rows if r.done or (r.observer is not None and r.observer.stopped)]
        for row in finished:
            row.done = True
        self._drop()
        if not self.rows:
            return finished
        assert self.mask is not None and self.last is not None
        positions = self.mask.sum(1, keepdim=True)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], 1)
        with torch.inference_mode():
            logits = self.model(
                input_ids=self.last,
                attention_mask=self.mask,
                position_ids=positions,
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        chosen = []
        for i, row in enumerate(self.rows):
            token = self._pick(row, logits[i])
            self._take(row, token)
            chosen.append(token)
        self.last = self.last.new_tensor(chosen).unsqueeze(1)
        finished += [r for r in self.rows if r.done]
        self._drop()
        return finished

    # --- one row's token ---
    def _pick(self, row: Row, logits: torch.Tensor) -> int:
        scores = logits.unsqueeze(0)
        if row.processors:  # they read the text so far (the repetition penalty)
            seen = torch.tensor([row.prompt + row.tokens], device=logits.device)
            scores = row.processors(seen, scores.float())
        if row.settings.do_sample:
            probabilities = torch.softmax(scores, -1)
            return int(torch.multinomial(probabilities[0], 1, generator=row.generator))
        return int(scores[0].argmax())

    def _take(self, row: Row, token: int) -> None:
        if token in self.stop_ids:
            row.done = True
            return
        row.tokens.append(token)
        if row.observer is not None:
            row.observer.put(token)
            if row.observer.stopped:
                row.done = True
        if row.remaining <= 0:
            row.done = True

    # --- the shared cache ---
    def _lay_beside(self, cache: Any, mask: torch.Tensor, last: torch.Tensor) -> None:
        """Append prefilled requests (`cache`, `mask`, `last`: their rows) to the batch, left-padding the narrower."""
        if self.cache is None:
            self.cache, self.mask, self.last = cache, mask, last
            return
        assert self.mask is not None and self.last is not None
        width = max(self.width, mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)])
            if hasattr(mine, "cumulative_length"):
                mine.cumulative_length = width
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(mask, width, dim=1)])
        self.last = torch.cat([self.last, last])

    def _drop(self) -> None:
        """Remove finished rows, and the left columns that are padding in every row left."""
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask = self.last = None
            return
        assert self.mask is not None and self.last is not None
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.last = _cut_padding(self.cache, self.mask[index]), self.last[index]


def _cut_padding(cache: Any, mask: torch.Tensor) -> torch.Tensor:
    """Cut the left columns that are padding in every row from `cache` and `mask`; returns the mask."""
    cut = int(mask.any(0).int().argmax())  # the first column some row uses
    if cut:
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[:, :, cut:], layer.values[:, :, cut:]
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length -= cut
    return mask[:, cut:]


def _pad_left(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim)


def _processors(model: torch.nn.Module, settings: GenerationSettings) -> Any:
    """The logits processors `generate` applies for these settings (None when greedy needs none)."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.do_sample:
        if settings.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(settings.temperature))
        top_k = getattr(getattr(model, "generation_config", None), "top_k", None)
        if top_k:
            processors.append(TopKLogitsWarper(top_k))
        if settings.top_p < 1.0:
            processors.append(TopPLogitsWarper(settings.top_p))
    return processors or None
