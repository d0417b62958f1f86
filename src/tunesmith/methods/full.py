"""Full fine-tuning: every weight is trained. Most capacity, most memory (weights + grads + 2 Adam moments)."""

from __future__ import annotations

from typing import Literal

import torch

from tunesmith.methods import METHODS
from tunesmith.methods.base import Method
from tunesmith.plugin import PluginParams


class FullParams(PluginParams):
    name: Literal["full"] = "full"


@METHODS.register("full")
class Full(Method):
    preference = 2
    fallback = None
    name = "full"
    Params = FullParams
    default_learning_rate = 5e-5
    saves_full_model = True

    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
