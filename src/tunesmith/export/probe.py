"""The fixed batch an export is checked on, and the comparison: the same inputs through the run's model and
through the exported artefact. Encoders are compared on their output scores (class logits, span logits);
text-writing models on the tokens they write greedily."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
NEAR_TIE = 0.1
"""Logits between the run's two best next tokens within which an f16 file may pick the other one. Rounding to
f16 moves a logit by up to 0.058 on a SmolLM2-135M run and 0.28 on a Gemma 3 270M run (teacher-forced on the
check answers, `python bench/gguf_near_ties.py RUN`); the one parting measured was at a margin of 0.0014
(the Gemma run, prompt 2 of 6, token 7). A q8_0 file moves the margin between the run's chosen token and its
ten runners-up by up to 1.27 (SmolLM2) and 4.68 (Gemma) logits, and its answers parted at run margins of 0.12
to 0.35: no margin small enough to call a tie covers q8_0, so quantized files are held to next-token
agreement (gguf.MIN_AGREEMENT) and the margins where their answers part are recorded."""


def writes_text(task: Any) -> bool:
    """True for tasks whose model writes its answer (chat, summarization, generative QA)."""
    return hasattr(task, "generate_texts") and not task.scores_input_positions


def encoder_batch(task: Any, tokenizer: Any) -> dict[str, torch.Tensor]:
    """The fixed batch for models that score their input: texts, or question/context pairs for span QA, or
    pairs of texts (with their token type ids, which the export then takes) for a run that reads pairs."""
    if task.scores_input_positions or task.reads_pairs:
        questions, contexts = zip(*QUESTIONS, strict=True)
        enc = tokenizer(list(questions), list(contexts), padding=True, return_tensors="pt")
    else:
        enc = tokenizer(list(TEXTS), padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if task.reads_pairs and "token_type_ids" in enc:
        batch["token_type_ids"] = enc["token_type_ids"]
    return batch


def conversations(task: Any) -> list[list[dict[str, str]]]:
    """The fixed conversations a text-writing export is checked on."""
    return task.sample_messages(TEXTS, QUESTIONS)


def greedy_tokens(task: Any, model: torch.nn.Module, pad_id: int) -> list[list[int]]:
    messages = conversations(task)
    return generate(
        model,
        [task.prompt_ids(m) for m in messages],
        GenerationSettings(max_new_tokens=NEW_TOKENS),
        pad_id=pad_id,
        stop_ids=stop_token_ids(task.tokenizer),
        encoder_decoder=task.encoder_decoder,
    )


def parting_margin(
    model: torch.nn.Module, prompt: list[int], run: list[int], other: list[int]
) -> float | None:
    """Where `other` (an artefact's greedy answer to `prompt`) first parts from the run's greedy answer `run`,
    how many logits the run's model itself put its own token above `other`'s there (0: a tie). None when the
    answers do not part at a token (identical, or one stops where the other goes on)."""
    k = next((i for i, (a, b) in enumerate(zip(run, other, strict=False)) if a != b), None)
    if k is None:
        return None
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + run[:k]], device=device)).logits[0, -1].float()
    return float(logits[run[k]] - logits[other[k]])


@dataclass
class Outputs:
    scores: dict[str, torch.Tensor]
    tokens: list[list[int]]
    agreement: float | None = None
    """Share of the reference's greedy tokens the artefact also ranks first after the same prefix (GGUF)."""
    prompts_equal: int | None = None
    """Prompts the artefact renders and tokenizes to the run's very token ids (GGUF's own chat template)."""
    perplexity_ratio: float | None = None
    """The artefact's perplexity of the run's validation answers over the run's own (GGUF; None: not
    measured, e.g. no validation data at hand)."""
    parting_margins: list[float | None] | None = None
    """For each prompt whose greedy answer is not the run's: the run's own logit margin between its token and
    the artefact's where they first part (None: one answer stops where the other goes on). GGUF."""


def outputs_of(task: Any, tokenizer: Any, model: torch.nn.Module, pad_id: int) -> Outputs:
    model.eval()
    if writes_text(task):
        return Outputs({}, greedy_tokens(task, model, pad_id))
    return Outputs(task.export_scores(model, encoder_batch(task, tokenizer)), [])


@dataclass
class Comparison:
    max_abs_diff: float | None
    """Largest score difference (encoders), None for text-writing models."""
    tokens_equal: int
    tokens_total: int
    tolerance: float
    agreement: float | None = None
    min_agreement: float | None = None
    """Set for a quantized artefact: its next-token agreement must reach it, instead of every greedy answer
    being identical (rounding the weights moves near-ties after a few tokens)."""
    prompts_equal: int | None = None
    perplexity_ratio: float | None = None
    max_perplexity_ratio: float | None = None
    """Set for a quantized artefact: the most its validation perplexity may exceed the run's, as a ratio."""
    parting_margins: list[float | None] | None = None
    """The run's margins where the answers that are not identical part (Outputs.parting_margins)."""

    @property
    def near_ties(self) -> int:
        """Answers not identical that part from the run's only where its own two best tokens were within
        NEAR_TIE logits."""
        return sum(m is not None and m <= NEAR_TIE for m in self.parting_margins or [])

    @property
    def ok(self) -> bool:
        scores_ok = self.max_abs_diff is None or self.max_abs_diff <= self.tolerance
        prompts_ok = self.prompts_equal is None or self.prompts_equal == self.tokens_total
        if self.min_agreement is None:
            tokens_ok = self.tokens_equal + self.near_ties == self.tokens_total
        else:
            tokens_ok = self.agreement is not None and self.agreement >= self.min_agreement
        perplexity_ok = (
            self.max_perplexity_ratio is None
            or self.perplexity_ratio is None
            or self.perplexity_ratio <= self.max_perplexity_ratio
        )
        return scores_ok and prompts_ok and tokens_ok and perplexity_ok

    def describe(self) -> str:
        if self.max_abs_diff is not None:
            return f"max |logit difference| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e})"
        said = f"greedy tokens identical on {self.tokens_equal} of {self.tokens_total} prompts"
        if self.min_agreement is None and self.near_ties:
            said += (
                f" ({self.near_ties} more part from the run only where its own two best tokens were within "
                f"{NEAR_TIE} logits)"
            )
        elif self.parting_margins:
            margins = [f"{m:.2f}" for m in self.parting_margins if m is not None]
            ends = len(self.parting_margins) - len(margins)
            parts = [
                f"{len(margins)} part where the run's own two tokens were {', '.join(margins)} logits apart"
            ]
            parts = (parts if margins else []) + ([f"{ends} stop at another length"] if ends else [])
            said += f" ({'; '.join(parts)})"
        if self.prompts_equal is not None:
            said = f"prompt tokens identical on {self.prompts_equal} of {self.tokens_total} prompts, {said}"
        if self.agreement is not None:
            said += f", next-token agreement {self.agreement:.1%}"
            if self.min_agreement is not None:
                said += f" (at least {self.min_agreement:.0%} asked)"
        if self.perplexity_ratio is not None:
            said += f", validation perplexity {self.perplexity_ratio:.3f}x the run's"
            if self.max_perplexity_ratio is not None:
                said += f" (at most {self.max_perplexity_ratio:.2f}x asked)"
        return said

    def as_json(self) -> dict[str, Any]:
        return {
            "max_abs_logit_difference": self.max_abs_diff,
            "tolerance": self.tolerance,
            "prompts_with_identical_tokens": self.tokens_equal,
            "prompts": self.tokens_total,
            "prompts_parting_at_a_near_tie": self.near_ties,
            "run_margins_where_answers_part": self.parting_margins,
            "prompts_rendered_identically": self.prompts_equal,
            "next_token_agreement": self.agreement,
            "min_next_token_agreement": self.min_agreement,
            "validation_perplexity_ratio": self.perplexity_ratio,
            "max_validation_perplexity_ratio": self.max_perplexity_ratio,
            "ok": self.ok,
        }


def compare(reference: Outputs, candidate: Outputs, plan: Plan) -> Comparison:
    diff = None
    if reference.scores:
        diff = 0.0
        for key, ref in reference.scores.items():
            got = candidate.scores.get(key)
            if got is None or got.shape != ref.shape:
                return Comparison(float("inf"), 0, 0, plan.tolerance)
            diff = max(diff, float((got.float() - ref).abs().max()))
    same = sum(a == b for a, b in zip(reference.tokens, candidate.tokens, strict=True))
    return Comparison(
        diff,
        same,
        len(reference.tokens),
        plan.tolerance,
        candidate.agreement,
        plan.min_agreement,
        candidate.prompts_equal,
        candidate.perplexity_ratio,
        plan.max_perplexity_ratio,
        candidate.parting_margins,
    )


Writer = Callable[[Any, Path], None]
Checker = Callable[[Any, Path, Outputs], Outputs]
"""(the loaded run, the written folder, the run model's outputs) -> the export's outputs on the same inputs."""


@dataclass
class Plan:
    """How one format is written and checked."""

    write: Writer
    check: Checker
    tolerance: float
    min_agreement: float | None = None
    quant: str | None = None
    max_perplexity_ratio: float | None = None
