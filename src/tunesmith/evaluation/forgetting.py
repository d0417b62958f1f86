"""What tuning cost in general ability ("forgetting"), measured the same way on the base and the tuned model.

The reference is `reference/general_english.txt`: 24 short paragraphs of everyday English on unrelated
topics (cooking, weather, history, sport, money...), written for this project and under its licence, so
nothing in it resembles anyone's task data.

Decoders (chat, instructions, summaries, generative QA)
  perplexity    exp(mean next-token loss) over the reference paragraphs. A tuned model that still writes
                general English scores close to the base; `perplexity_increase` is tuned / base - 1
                (0.10 = 10% more surprised by ordinary text).
  answers       greedy answers to a few general prompts, base and tuned side by side, to read.
Encoders (classification, extractive QA)
  similarity    mean cosine similarity between the base's and the tuned encoder's sentence embeddings
                (mean-pooled last hidden states) of the reference's sentences: 1.0 for an untouched
                encoder, lower the further tuning moved it.
  retrieval     a small general ranking check: each paragraph's first sentence must find the rest of its
                paragraph among all 24 by cosine similarity; accuracy@1 of the base and of the tuned
                encoder (`retrieval_drop` = base - tuned).
A warning is raised past the thresholds in the `evaluation` config section.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import numpy as np
import torch

from tunesmith.evaluation.baseline import embed
from tunesmith.methods.prompt_learning import virtual_tokens
from tunesmith.models.running import evaluating

GENERAL_PROMPTS = (
    "Explain in two sentences why the sky is blue.",
    "Write a short, friendly note inviting a neighbour to a barbecue on Saturday.",
    "Name three things to pack for a day of hiking, and say why.",
)
ANSWER_TOKENS = 48


def reference_paragraphs() -> list[str]:
    text = (files("tunesmith.evaluation") / "reference" / "general_english.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def reference_sentences() -> list[str]:
    return [s for p in reference_paragraphs() for s in re.split(r"(?<=[.!?])\s+", p) if s]


@dataclass
class GeneralAbility:
    """One model's scores on the reference: the decoder's or the encoder's half is filled."""

    perplexity: float | None = None
    answers: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    """The reference's sentence embeddings (compared with the other model's, not reported)."""
    retrieval: float | None = None


# --- decoders ---
@torch.inference_mode()
def reference_perplexity(model: torch.nn.Module, tokenizer: Any, max_length: int) -> float:
    """exp(mean next-token loss) over the reference paragraphs, each read on its own (cut at max_length)."""
    total, count = 0.0, 0
    with evaluating(model) as device:
        for paragraph in reference_paragraphs():
            ids = tokenizer(paragraph, truncation=True, max_length=max_length, return_tensors="pt")[
                "input_ids"
            ]
            if tokenizer.bos_token_id is not None and ids[0, 0] != tokenizer.bos_token_id:
                ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], 1)[:, :max_length]
            ids = ids.to(device)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            logits = logits[:, virtual_tokens(model) :]  # prompt tuning's virtual tokens come first
            loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="sum")
            total, count = total + loss.item(), count + ids.shape[1] - 1
    return math.exp(total / max(count, 1))


def decoder_ability(
    model: torch.nn.Module,
    tokenizer: Any,
    max_length: int,
    answers: Callable[[Sequence[str]], list[str]],
) -> GeneralAbility:
    """`answers(prompts)`: the model's greedy replies to user messages, rendered as the task renders them."""
    return GeneralAbility(
        perplexity=reference_perplexity(model, tokenizer, max_length), answers=answers(GENERAL_PROMPTS)
    )


# --- encoders ---
def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder under a task head (and under a peft wrapper): what produces sentence embeddings."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, inner.base_model_prefix, inner)


def encoder_ability(model: torch.nn.Module, tokenizer: Any, max_length: int) -> GeneralAbility:
    encoder = backbone(model)
    sentences = embed(encoder, tokenizer, reference_sentences(), max_length)
    paragraphs = reference_paragraphs()
    firsts = [re.split(r"(?<=[.!?])\s+", p, maxsplit=1) for p in paragraphs]
    queries = embed(encoder, tokenizer, [f[0] for f in firsts], max_length)
    documents = embed(encoder, tokenizer, [f[-1] for f in firsts], max_length)
    scores = _unit(queries) @ _unit(documents).T
    retrieval = float((scores.argmax(1) == np.arange(len(paragraphs))).mean())
    return GeneralAbility(embeddings=sentences, retrieval=retrieval)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


# --- base vs tuned ---
def forgetting(base: GeneralAbility, tuned: GeneralAbility, thresholds: Any) -> dict[str, Any]:
    """The report's `forgetting` section: the numbers, and the warnings past `thresholds` (the `evaluation`
    config section)."""
    out: dict[str, Any] = {"warnings": []}
    if base.perplexity is not None and tuned.perplexity is not None:
        increase = tuned.perplexity / base.perplexity - 1
        out.update(
            base_perplexity=base.perplexity,
            tuned_perplexity=tuned.perplexity,
            perplexity_increase=increase,
            prompts=[
                {"prompt": p, "base": b, "tuned": t}
                for p, b, t in zip(GENERAL_PROMPTS, base.answers, tuned.answers, strict=True)
            ],
        )
        if increase > thresholds.perplexity_increase_warning:
            out["warnings"].append(
                f"perplexity on general English rose {100 * increase:.0f}% ({base.perplexity:.1f} -> "
                f"{tuned.perplexity:.1f}), over evaluation.perplexity_increase_warning="
                f"{thresholds.perplexity_increase_warning:g}: the model lost general language ability; try a "
                "lower learning rate, fewer epochs or a smaller update (LoRA rank, freeze)"
            )
    if base.embeddings is not None and tuned.embeddings is not None:
        similarity = float((_unit(base.embeddings) * _unit(tuned.embeddings)).sum(1).mean())
        drop = (base.retrieval or 0.0) - (tuned.retrieval or 0.0)
        out.update(
            embedding_similarity=similarity,
            base_retrieval=base.retrieval,
            tuned_retrieval=tuned.retrieval,
            retrieval_drop=drop,
        )
        if similarity < thresholds.embedding_similarity_warning:
            out["warnings"].append(
                f"the encoder's general sentence embeddings moved far (mean cosine similarity to the base "
                f"{similarity:.2f}, under evaluation.embedding_similarity_warning="
                f"{thresholds.embedding_similarity_warning:g}): do not reuse it as a general-purpose encoder"
            )
        if drop > thresholds.retrieval_drop_warning:
            out["warnings"].append(
                f"general retrieval accuracy fell {base.retrieval:.2f} -> {tuned.retrieval:.2f}, more than "
                f"evaluation.retrieval_drop_warning={thresholds.retrieval_drop_warning:g}"
            )
    return out


def describe(section: dict[str, Any]) -> list[str]:
    """One line per number, for the console."""
    lines = []
    if "perplexity_increase" in section:
        lines.append(
            f"general-English perplexity: base {section['base_perplexity']:.2f}, tuned "
            f"{section['tuned_perplexity']:.2f} ({100 * section['perplexity_increase']:+.1f}%)"
        )
    if "embedding_similarity" in section:
        lines.append(
            f"general sentence embeddings: mean cosine similarity to the base {section['embedding_similarity']:.3f}; "
            f"general retrieval accuracy@1: base {section['base_retrieval']:.2f}, tuned {section['tuned_retrieval']:.2f}"
        )
    return lines
