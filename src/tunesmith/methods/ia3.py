"""IA3 (Liu et al. 2022) via peft: learned vectors that rescale the keys, values and feed-forward
activations; the fewest trainable parameters of any method here (one number per channel per adapted
layer), so it wants a higher learning rate than LoRA."""

from __future__ import annotations

from typing import Any, Literal

import torch

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.methods.peft_method import PeftMethod, model_type
from tunesmith.plugin import PluginParams


class IA3Params(PluginParams):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = None
    """Layers whose output (or, for feed-forward ones, input) is rescaled; empty takes peft's default for the
    architecture (keys, values and the feed-forward output projection)."""
    feedforward_modules: list[str] | None = None
    """Which of `target_modules` are feed-forward layers (rescaled on their input); empty: peft's default."""


@METHODS.register("ia3")
class IA3(PeftMethod):
    preference = 9
    fallback = 2
    name = "ia3"
    Params = IA3Params
    default_learning_rate = 3e-3
    params: IA3Params

    def peft_config(self, model: torch.nn.Module, task_type: str | None, total_steps: int | None) -> Any:
        from peft import IA3Config
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as DEFAULTS

        p = self.params
        if p.target_modules is None and model_type(model) not in DEFAULTS:
            raise ConfigError(
                f"method ia3 has no default layers for {model_type(model) or 'this model'}; set "
                "method.target_modules and method.feedforward_modules"
            )
        return IA3Config(
            target_modules=p.target_modules,
            feedforward_modules=p.feedforward_modules,
            task_type=task_type,
        )
