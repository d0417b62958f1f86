"""Render a conversation with the tokenizer's chat template and mark which tokens the loss sees.

Only assistant answers are supervised by default, every assistant turn of a multi-turn chat, each with the
template's end-of-turn token that closes it, so the tuned model learns to stop. The spans are found on the
rendered text, not by token arithmetic: the conversation up to each assistant turn is rendered with the
generation prompt, then with the answer, and the difference is the answer's span; tokens whose characters
start inside a span get labels, all others -100. That works for any template that renders a conversation as
a prefix of its continuation (ChatML, Llama, Gemma, ...); one that does not is refused with a clear error.

A tokenizer without a chat template gets DEFAULT_TEMPLATE (ChatML), stored with the run so serving renders
prompts exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100

DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML, used when a tokenizer has no chat template of its own. Its end-of-turn marker is <|im_end|>."""


class TemplateError(ValueError):
    """The chat template cannot be used to find answer spans (rendering is not prefix-stable)."""


@dataclass(frozen=True)
class EncodedChat:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def ensure_template(tokenizer: Any) -> str:
    """The tokenizer's chat template, or the documented default set on it."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_TEMPLATE
    return tokenizer.chat_template


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def answer_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant answers (with end-of-turn)."""
    text = _render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], True)
        upto = _render(tokenizer, messages[: i + 1], False)
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise TemplateError(
                "the chat template does not render a conversation as a prefix of its continuation, so answer "
                "tokens cannot be located; set a prefix-stable template (e.g. ChatML)"
            )
        spans.append((len(prompt), len(upto)))
    return text, spans


def encode_chat(
    tokenizer: Any, messages: Sequence[dict[str, str]], max_length: int, train_on_prompt: bool = False
) -> EncodedChat:
    text, spans = answer_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if train_on_prompt:
        labels = list(ids)
    else:
        labels = [
            tok if any(a <= start < b for a, b in spans) else IGNORE
            for tok, (start, _) in zip(ids, offsets, strict=True)
        ]
    truncated = len(ids) > max_length
    return EncodedChat(ids[:max_length], labels[:max_length], truncated)
