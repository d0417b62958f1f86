"""The fixed batch an export is checked on, and the comparison: the same inputs through the run's model and
through the exported artefact. Encoders are compared on their output scores (class logits, span logits);
text-writing models on the tokens they write greedily."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.data.chat_encoding import stop_token_ids
from tunesmith.generation import GenerationSettings, generate

TEXTS = (
    "My card was charged twice for the same order, please refund one of them.",
    "How do I reset the password on my account?",
    "The quarterly meeting moved to Tuesday because the large room was booked.",
    "short",
    "Le colis est arrivé endommagé ; que dois-je faire ?",
    "Write two sentences about the sea.",
)
"""Mixed lengths (so padding is exercised), topics and one non-English text."""
QUESTIONS = (
    (
        "When did the meeting move?",
        "The quarterly meeting moved to Tuesday because the large room was booked.",
    ),
    ("What was charged twice?", "My card was charged twice for the same order last week."),
    ("Who wrote the report?", "The report was written by Ana and reviewed by the finance team."),
)
NEW_TOKENS = 16
"""Greedy tokens compared per prompt for text-writing models."""


def writes_text(task: Any) -> bool:
    """True for tasks whose model writes its answer (chat, summarization, generative QA)."""
    return hasattr(task, "generate_texts") and not task.scores_input_positions


def encoder_batch(task: Any, tokenizer: Any) -> dict[str, torch.Tensor]:
    """The fixed batch for models that score their input: texts, or question/context pairs for span QA."""
    if task.scores_input_positions:
        questions, contexts = zip(*QUESTIONS, strict=True)
        enc = tokenizer(list(questions), list(contexts), padding=True, return_tensors="pt")
    else:
        enc = tokenizer(list(TEXTS), padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def encoder_outputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**batch)
    return {k: out[k].float() for k in ("logits", "start_logits", "end_logits") if k in out}


def greedy_tokens(task: Any, model: torch.nn.Module, pad_id: int) -> list[list[int]]:
    messages = task.sample_messages(TEXTS, QUESTIONS)
    return generate(
        model,
        [task.prompt_ids(m) for m in messages],
        GenerationSettings(max_new_tokens=NEW_TOKENS),
        pad_id=pad_id,
        stop_ids=stop_token_ids(task.tokenizer),
        encoder_decoder=task.encoder_decoder,
    )


@dataclass
class Outputs:
    scores: dict[str, torch.Tensor]
    tokens: list[list[int]]


def outputs_of(task: Any, tokenizer: Any, model: torch.nn.Module, pad_id: int) -> Outputs:
    model.eval()
    if writes_text(task):
        return Outputs({}, greedy_tokens(task, model, pad_id))
    return Outputs(encoder_outputs(model, encoder_batch(task, tokenizer)), [])


@dataclass
class Comparison:
    max_abs_diff: float | None
    """Largest score difference (encoders), None for text-writing models."""
    tokens_equal: int
    tokens_total: int
    tolerance: float

    @property
    def ok(self) -> bool:
        scores_ok = self.max_abs_diff is None or self.max_abs_diff <= self.tolerance
        return scores_ok and self.tokens_equal == self.tokens_total

    def describe(self) -> str:
        if self.max_abs_diff is not None:
            return f"max |logit difference| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e})"
        return f"greedy tokens identical on {self.tokens_equal} of {self.tokens_total} prompts"

    def as_json(self) -> dict[str, Any]:
        return {
            "max_abs_logit_difference": self.max_abs_diff,
            "tolerance": self.tolerance,
            "prompts_with_identical_tokens": self.tokens_equal,
            "prompts": self.tokens_total,
            "ok": self.ok,
        }


def compare(reference: Outputs, candidate: Outputs, tolerance: float) -> Comparison:
    diff = None
    if reference.scores:
        diff = 0.0
        for key, ref in reference.scores.items():
            got = candidate.scores.get(key)
            if got is None or got.shape != ref.shape:
                return Comparison(float("inf"), 0, 0, tolerance)
            diff = max(diff, float((got.float() - ref).abs().max()))
    same = sum(a == b for a, b in zip(reference.tokens, candidate.tokens, strict=True))
    return Comparison(diff, same, len(reference.tokens), tolerance)
