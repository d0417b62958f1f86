"""Text generation from token-id prompts, batched, for validation, evaluation, `predict` and `chat`.

Greedy by default; beam search and sampling come from the task's `generation` settings. Decoder prompts are
left-padded (the new tokens then line up at the right); encoder-decoder inputs are right-padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from pydantic import Field

from tunesmith.data.padding import pad
from tunesmith.errors import ConfigError
from tunesmith.methods.prompt_learning import is_prompt_learning
from tunesmith.models.running import evaluating
from tunesmith.plugin import Section


class GenerationSettings(Section):
    max_new_tokens: int = Field(128, gt=0)
    """Longest answer generated, in tokens."""
    num_beams: int = Field(1, ge=1)
    """1 is greedy (or sampling); more is beam search."""
    do_sample: bool = False
    """Sample instead of taking the most likely token (use temperature / top_p)."""
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0
    """Seed for sampling, so sampled outputs are reproducible."""


def generate(
    model: torch.nn.Module,
    prompts: Sequence[list[int]],
    settings: GenerationSettings,
    *,
    pad_id: int,
    stop_ids: Sequence[int],
    batch_size: int = 16,
    encoder_decoder: bool = False,
    observer: TokenObserver | None = None,
) -> list[list[int]]:
    """New token ids for each prompt (without the prompt, cut at the first stop token), in input order.
    `observer` (one prompt only): sees each new token as it is made, and can end the answer early (the
    server's streaming and stop strings)."""
    if observer is not None and len(prompts) != 1:
        raise ValueError("an observer follows one prompt at a time")
    if not encoder_decoder and is_prompt_learning(model):
        return [_decode_by_forward_passes(model, p, settings, stop_ids, pad_id, observer) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "num_beams": settings.num_beams,
        "do_sample": settings.do_sample,
        "repetition_penalty": settings.repetition_penalty,
        "pad_token_id": pad_id,
        "eos_token_id": list(stop_ids) or None,
    }
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    if observer is not None:
        kwargs.update(stopping_criteria=_observed(observer))
    if (
        not settings.do_sample
    ):  # keep the model's generation_config sampling defaults from leaking into greedy/beam decoding
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with evaluating(model) as device:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad([prompts[i] for i in idx], pad_id, left=not encoder_decoder)
            width = ids.shape[1]
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            new = generated if encoder_decoder else generated[:, width:]
            for row, i in enumerate(idx):
                tokens = new[row].tolist()
                if (
                    encoder_decoder
                    and tokens
                    and tokens[0] == getattr(model.config, "decoder_start_token_id", None)
                ):
                    tokens = tokens[1:]
                out[i] = _cut(tokens, stop_ids, pad_id)
    return out


def _decode_by_forward_passes(
    model: torch.nn.Module,
    prompt: list[int],
    settings: GenerationSettings,
    stop_ids: Sequence[int],
    pad_id: int,
    observer: TokenObserver | None = None,
) -> list[int]:
    """Decoding with one whole forward pass per new token and no cache, for prompt- and prefix-tuned decoders.
    With peft 0.21 and transformers 5, `generate` gets these models wrong after the first token: a prefix
    model's learned keys and values are left out (its answers are the base model's), and prompt tuning's
    cached steps are read at the wrong positions (peft drops position ids; left padding in a batch shifts
    them further). A forward pass over the whole text is what training computed. Slower (each step reads the
    text again), but it answers with the model that was trained; one prompt at a time; no beam search."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    if settings.num_beams > 1:
        raise ConfigError(
            "prompt and prefix tuning generate greedily or by sampling here: set generation.num_beams: 1"
        )
    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.do_sample:
        processors += [TemperatureLogitsWarper(settings.temperature), TopPLogitsWarper(settings.top_p)]
        generator = torch.Generator().manual_seed(settings.seed)
    with evaluating(model) as device:
        ids = torch.tensor([prompt], device=device)
        new: list[int] = []
        for _ in range(settings.max_new_tokens):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].float()
            scores = processors(ids, logits)
            if settings.do_sample:
                probabilities = torch.softmax(scores, -1).cpu()
                token = int(torch.multinomial(probabilities[0], 1, generator=generator))
            else:
                token = int(scores[0].argmax())
            new.append(token)
            if token in stop_ids:
                break
            if observer is not None:
                observer.put(token)
                if observer.stopped:
                    break
            ids = torch.cat([ids, torch.tensor([[token]], device=device)], 1)
    return _cut(new, stop_ids, pad_id)


class TokenObserver(Protocol):
    stopped: bool
    """True once the observer wants no more tokens."""

    def put(self, token: int) -> None: ...


def _observed(observer: TokenObserver) -> Any:
    """A stopping criterion that hands the observer each new token and stops when it says so. (It runs after
    the token is appended, so the answer ends exactly where the observer stopped; a streamer is told of the
    token only after the stop is decided, which would add one more.)"""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Observed(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            observer.put(int(input_ids[0, -1]))
            return torch.full(
                (input_ids.shape[0],), observer.stopped, dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([Observed()])


def _cut(tokens: list[int], stop_ids: Sequence[int], pad_id: int) -> list[int]:
    for n, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:n]
    while tokens and tokens[-1] == pad_id:
        tokens = tokens[:-1]
    return tokens
