"""Prefix tuning (Li & Liang 2021; P-tuning v2) via peft: learned keys and values in front of every layer's
attention, so every layer attends to them; the model's own weights stay frozen.

peft starts the prefixes at random, at a scale far from the keys and values a trained model makes, and the
first steps then mostly undo the damage (on SmolLM2 the untrained prefix triples the loss). On a decoder we
start them instead as the model's own keys and values for a short text, so the untrained prefix is exactly
that text in front of every input, and training moves on from there. With `projection`, the prefixes come
out of a small MLP during training (random start; peft saves the MLP's output, not the MLP)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.methods.prompt_learning import PromptLearning, PromptLearningParams

DEFAULT_INIT_TEXT = "Read the input below carefully and answer as the examples taught you."


class PrefixParams(PromptLearningParams):
    name: Literal["prefix"] = "prefix"
    init_text: str | None = DEFAULT_INIT_TEXT
    """On a decoder without projection: the text whose keys and values start the prefix (its tokens repeated
    or cut to virtual_tokens); empty starts the prefix at random, as peft does."""
    projection: bool = False
    """Produce the prefixes through a two-layer MLP (Li & Liang's reparameterisation)."""
    projection_size: int = Field(128, gt=0)
    """Hidden width of that MLP."""


@METHODS.register("prefix")
class Prefix(PromptLearning):
    preference = 10
    fallback = None
    name = "prefix"
    Params = PrefixParams
    default_learning_rate = 1e-2
    params: PrefixParams

    def incompatibility(self, task: Any) -> str | None:
        if task.model_kind == "encoder":
            return (
                "transformers' encoder models take no past keys and values to put the prefix in; "
                "use prompt (for classification) or lora"
            )
        return super().incompatibility(task)

    def config(self, model: torch.nn.Module, task_type: str) -> Any:
        from peft import PrefixTuningConfig

        p = self.params
        return PrefixTuningConfig(
            num_virtual_tokens=p.virtual_tokens,
            task_type=task_type,
            prefix_projection=p.projection,
            encoder_hidden_size=p.projection_size,
        )

    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        wrapped = super().apply(model, task_type, total_steps)
        causal = wrapped.peft_config["default"].task_type == "CAUSAL_LM"
        if self.params.init_text and not self.params.projection and causal:
            start_from_text(wrapped, self.params.init_text)
        return wrapped


def start_from_text(model: Any, text: str) -> None:
    """Set the prefix to the base model's keys and values for `text`'s first virtual_tokens tokens."""
    from transformers import AutoTokenizer

    config = model.peft_config["default"]
    n = config.num_virtual_tokens
    source = model.base_model.config.name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        raise ConfigError(
            f"method prefix: no tokenizer at {source or 'the model'} to read init_text with; "
            "set method.init_text to empty for a random start"
        ) from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id or 0]
    ids = (ids * (n // len(ids) + 1))[:n]
    with torch.no_grad():
        cache = model.base_model(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
        # peft reads its prefix table as [token, layer, key|value, head, head_dim] (see PeftModel.get_prompt)
        table = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])
        embedding = model.prompt_encoder["default"].embedding.weight
        embedding.copy_(table.permute(3, 0, 1, 2, 4).reshape(n, -1).to(embedding.dtype))
