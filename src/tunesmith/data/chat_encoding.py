"""Render a conversation with the tokenizer's chat template and mark which tokens the loss sees.

Only assistant answers are supervised by default, every assistant turn of a multi-turn chat, each with the
template's end-of-turn token that closes it, so the tuned model learns to stop. The spans are found on the
rendered text, not by token arithmetic: the conversation up to each assistant turn is rendered with the
generation prompt, then with the answer, and the difference is the answer's span; tokens whose characters
start inside a span get labels, all others -100. That works for any template that renders a conversation as
a prefix of its continuation (ChatML, Llama, Gemma, ...); one that does not is refused with a clear error.

A tokenizer without a chat template gets DEFAULT_TEMPLATE (ChatML role markers, each turn closed by the
tokenizer's own EOS token so generation stops on a token the model already has), stored with the run so
`predict`, `chat` and the server render prompts exactly as training did: all of them go through
`render_prompt` / `encode_prompt` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100

DEFAULT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML layout, used when a tokenizer has no chat template of its own: the model's BOS token (if it has one)
starts the text, as in pretraining, and each turn ends with the EOS token."""


class TemplateError(ValueError):
    """The chat template cannot be used to find answer spans (rendering is not prefix-stable)."""


@dataclass(frozen=True)
class EncodedChat:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    length: int
    """Tokens of the whole conversation, before max_length cut it."""

    @property
    def supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def ensure_template(tokenizer: Any) -> str:
    """The tokenizer's chat template, or the documented default set on it (with an EOS token to end turns:
    the tokenizer's own, else its separator token)."""
    if not getattr(tokenizer, "chat_template", None):
        if tokenizer.eos_token is None:
            if tokenizer.sep_token is None:
                raise TemplateError("the tokenizer has no chat template and no EOS token to end a turn with")
            tokenizer.eos_token = tokenizer.sep_token
        tokenizer.chat_template = DEFAULT_TEMPLATE
    return tokenizer.chat_template


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an assistant turn: EOS, and the template's end-of-turn marker if it is one token."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for marker in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>"):
        token_id = tokenizer.convert_tokens_to_ids(marker)
        if marker in tokenizer.get_vocab() and token_id not in ids:
            ids.append(token_id)
    return ids


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The text a model continues to answer `messages`: the conversation plus the assistant header. Training
    (the prompts generated from during validation), `predict`, `chat` and the server all call this."""
    return _render(tokenizer, messages, True)


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The text of a whole conversation, as trained on."""
    return _render(tokenizer, messages, False)


def encode_prompt(tokenizer: Any, messages: Sequence[dict[str, str]], max_length: int) -> list[int]:
    """Token ids of `render_prompt`; an over-long prompt keeps its end (the question and the header)."""
    ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    return ids[-max_length:]


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    """`apply_chat_template(messages, tokenize=False)`, rendered with the compiled template directly: for
    plain string turns (all we pass) that is the same text (tests/unit/test_chat_encoding.py checks it) at
    about a third of the cost, which the data check of 100,000 chats needs."""
    template = _compiled(tokenizer.chat_template)
    if template is None:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=generation_prompt
        )
    return template.render(
        messages=[dict(m) for m in messages],
        tools=None,
        documents=None,
        add_generation_prompt=generation_prompt,
        **tokenizer.special_tokens_map,
    )


def _compiled(chat_template: str) -> Any:
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template  # cached by transformers
    except ImportError:  # a transformers without it: the public (slower) path
        return None
    return _compile_jinja_template(chat_template)


def answer_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant answers (with end-of-turn)."""
    text = _render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], True)
        upto = text if i == len(messages) - 1 else _render(tokenizer, messages[: i + 1], False)
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
    return EncodedChat(ids[:max_length], labels[:max_length], truncated, len(ids))
