"""What prompt tuning and prefix tuning share: the base model stays whole and frozen, and a few learned
"virtual tokens" are put in front of every input (as input embeddings for prompt tuning, as keys and values
in every layer for prefix tuning). The task head, where the task has a new one, is trained and saved too.

Packing several examples into one row does not mix with virtual tokens (they would sit in front of the
first example only), so generative tasks train these methods on padded batches."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from tunesmith.methods.peft_method import PeftMethod
from tunesmith.plugin import PluginParams


class PromptLearningParams(PluginParams):
    virtual_tokens: int = Field(20, gt=0)
    """Learned tokens put in front of every input; they count against the model's context length."""


class PromptLearning(PeftMethod):
    cannot_merge = (
        "its virtual tokens (input embeddings, or keys and values at every layer) sit in front of every "
        "input, not in weights a plain model has; "
        "export it with --format adapter (peft loads it)"
    )
    cannot_shard = (
        "peft builds the virtual tokens outside the model's forward pass, where FSDP has not gathered them"
    )
    starts_as_base = False  # the virtual tokens change the output from the start
    params: PromptLearningParams

    def incompatibility(self, task: Any) -> str | None:
        if task.needs_reference_model:
            return (
                f"the {task.name} loss compares the model with its reference, the same model with its adapter "
                "switched off, and peft cannot switch virtual tokens off for it; use lora, dora or qlora (or "
                "a loss without a reference: task.loss orpo or simpo)"
            )
        return None

    def peft_config(self, model: torch.nn.Module, task_type: str | None, total_steps: int | None) -> Any:
        return self.config(model, task_type or _generative_task_type(model))

    def config(self, model: torch.nn.Module, task_type: str) -> Any:
        """peft's config for this method (task_type is always set: prompt learning needs peft's wrapper)."""
        raise NotImplementedError


def is_prompt_learning(model: torch.nn.Module) -> bool:
    """A peft prompt- or prefix-tuned model (its virtual tokens go in front of every input)."""
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and config.is_prompt_learning)


def _generative_task_type(model: torch.nn.Module) -> str:
    return "SEQ_2_SEQ_LM" if getattr(model.config, "is_encoder_decoder", False) else "CAUSAL_LM"


def virtual_tokens(model: torch.nn.Module) -> int:
    """Virtual tokens a prompt-tuned model puts in front of its inputs (0 for every other model): the
    positions its logits gain at the start."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not config.is_prompt_learning or config.peft_type != "PROMPT_TUNING":
        return 0
    return int(config.num_virtual_tokens)
