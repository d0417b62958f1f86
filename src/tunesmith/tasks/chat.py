"""Instruction and chat tuning: OpenAI messages, ShareGPT, alpaca or prompt/completion files -> a decoder that
answers in the same voice. Every assistant turn is supervised (with the end-of-turn token); the last one is
also the reference the generated answer is scored against (ROUGE, BLEU, chrF)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from tunesmith.data.chat_formats import Conversation, read_conversations
from tunesmith.data.checks.view import ExampleView
from tunesmith.data.readers import FileFormat, OnError
from tunesmith.evaluation.text_metrics import bleu_chrf, rouge_per_example
from tunesmith.tasks import TASKS
from tunesmith.tasks.generative import GenerativeParams, GenerativeTask


class ChatParams(GenerativeParams):
    name: Literal["chat"] = "chat"
    format: Literal["auto", "openai", "sharegpt", "alpaca", "prompt_completion"] = "auto"
    """Shape of each record; `auto` tells it from the first record's fields."""
    truncate_history: bool = False
    """A conversation longer than model.max_length drops its oldest turns (the system prompt and the last
    exchange always stay) until it fits, instead of being an error when its answer would be cut off. Off by
    default: earlier turns are often what the answer depends on, so cutting them is the user's call."""


@TASKS.register("chat")
class Chat(GenerativeTask):
    name = "chat"
    Params = ChatParams
    model_kinds = ("causal",)
    params: ChatParams

    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[Conversation]:
        return read_conversations(path, self.params.format, fmt, on_error)

    def fitted(self, example: Conversation) -> tuple[Conversation, int | None]:
        """With truncate_history, a conversation over model.max_length without its oldest turns (whole
        exchanges from the front, so it still opens with a user turn), and its whole length; else as is."""
        if not self.params.truncate_history or self.tokenizer is None:
            return example, None
        limit, total = self.model_cfg.max_length, self._conversation_tokens(example)
        if total <= limit:
            return example, None
        turns = self.turns(example)
        system = turns[:1] if turns[0]["role"] == "system" else []
        rest = turns[len(system) :]
        while len(rest) > 2:
            rest = rest[1:]
            while len(rest) > 2 and rest[0]["role"] != "user":
                rest = rest[1:]
            shorter = replace(example, messages=tuple(system + rest))
            if self._conversation_tokens(shorter) <= limit:
                return shorter, total
        return example, None  # even the last exchange does not fit: its answer is cut off (an error)

    def cut_description(self) -> str:
        return "their oldest turns"

    def view(self, example: Conversation) -> ExampleView:
        """The input is what the user wrote (a system prompt shared by every chat is not data)."""
        turns = self.turns(example)
        prompt = "\n".join(m["content"] for m in turns[:-1] if m["role"] != "system")
        return ExampleView(example.path, example.line, example.unit, prompt, turns[-1]["content"], False)

    def corpus_scores(self, outputs: Sequence[str], references: Sequence[list[str]]) -> dict[str, float]:
        return bleu_chrf(outputs, [refs[0] for refs in references])

    def example_scores(
        self, outputs: Sequence[str], references: Sequence[list[str]]
    ) -> dict[str, list[float]]:
        return rouge_per_example(outputs, [refs[0] for refs in references])

    # --- serving and re-tuning ---
    record_params: ClassVar[dict[str, Any]] = {"format": "openai"}

    def traffic_text(self, logged_input: Any) -> str:
        """A logged chat's last user message: what this request asked."""
        users = [
            m.get("content", "") for m in logged_input if isinstance(m, dict) and m.get("role") == "user"
        ]
        return users[-1] if users else ""

    def record(self, example: Conversation) -> dict[str, Any]:
        return {"messages": [dict(m) for m in example.messages]}

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        return {"messages": [*logged_input, {"role": "assistant", "content": answer}]}
