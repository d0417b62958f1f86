"""Instruction and chat tuning: OpenAI messages, ShareGPT, alpaca or prompt/completion files -> a decoder that
answers in the same voice. Every assistant turn is supervised (with the end-of-turn token); the last one is
also the reference the generated answer is scored against (ROUGE, BLEU, chrF)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tunesmith.data.chat_formats import Conversation, read_conversations
from tunesmith.errors import DataError
from tunesmith.evaluation.text_metrics import bleu_chrf, rouge
from tunesmith.tasks import TASKS
from tunesmith.tasks.generative import GenerativeParams, GenerativeTask


class ChatParams(GenerativeParams):
    name: Literal["chat"] = "chat"
    format: Literal["auto", "openai", "sharegpt", "alpaca", "prompt_completion"] = "auto"
    """Shape of each record; `auto` tells it from the first record's fields."""


@TASKS.register("chat")
class Chat(GenerativeTask):
    name = "chat"
    Params = ChatParams
    model_kinds = ("causal",)
    params: ChatParams

    def read(self, path: Path, fmt: str) -> list[Conversation]:
        examples = list(read_conversations(path, self.params.format, fmt))
        if not examples:
            raise DataError(path, None, "no conversations in the file")
        return examples

    def score(self, outputs: Sequence[str], references: Sequence[list[str]]) -> dict[str, float]:
        firsts = [refs[0] for refs in references]
        return {**rouge(outputs, firsts), **bleu_chrf(outputs, firsts)}
