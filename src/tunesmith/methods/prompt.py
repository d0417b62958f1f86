"""Prompt tuning (Lester et al. 2021) via peft: a few learned input embeddings in front of every input;
nothing inside the model changes. The fewest trainable parameters of any method (virtual_tokens x hidden
size, plus the task head), at the price of slower learning: it wants a high learning rate and more epochs.
Not for extractive QA: the virtual tokens would shift every answer position."""

from __future__ import annotations

from typing import Any, Literal

import torch

from tunesmith.methods import METHODS
from tunesmith.methods.prompt_learning import PromptLearning, PromptLearningParams


class PromptParams(PromptLearningParams):
    name: Literal["prompt"] = "prompt"
    init_text: str | None = None
    """Start the virtual tokens from this text's embeddings (e.g. "Classify the support ticket:"), repeated
    or cut to virtual_tokens; empty starts them at random."""


@METHODS.register("prompt")
class Prompt(PromptLearning):
    preference = 11
    fallback = 3
    name = "prompt"
    Params = PromptParams
    default_learning_rate = 3e-2
    params: PromptParams

    def incompatibility(self, task: Any) -> str | None:
        if task.scores_input_positions:
            return f"the virtual tokens would shift every position the {task.name} head predicts; use lora"
        return super().incompatibility(task)

    def config(self, model: torch.nn.Module, task_type: str) -> Any:
        from peft import PromptTuningConfig

        p = self.params
        text = {}
        if p.init_text:
            text = {
                "prompt_tuning_init": "TEXT",
                "prompt_tuning_init_text": p.init_text,
                "tokenizer_name_or_path": model.config.name_or_path,
            }
        return PromptTuningConfig(num_virtual_tokens=p.virtual_tokens, task_type=task_type, **text)
