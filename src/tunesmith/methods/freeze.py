"""Partial fine-tuning: freeze the embeddings and lower layers, train the top N layers and the head."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.methods.base import Method, freeze_all, layer_stack
from tunesmith.plugin import PluginParams


class FreezeParams(PluginParams):
    name: Literal["freeze"] = "freeze"
    layers: int = Field(2, ge=0)
    """Top transformer layers to train (0 trains only what sits above the layers: pooler, norm, head)."""


@METHODS.register("freeze")
class Freeze(Method):
    preference = 7
    fallback = None
    name = "freeze"
    Params = FreezeParams
    default_learning_rate = 1e-4
    saves_full_model = True
    params: FreezeParams

    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        stack_name, stack = layer_stack(model)
        n = self.params.layers
        if n > len(stack):
            raise ConfigError(f"method.layers={n}, but the model has only {len(stack)} layers")
        freeze_all(model)
        # Parameters are registered bottom-up (embeddings, layer 0..L-1, pooler/norm, head): everything from
        # the first trained layer on is trained (with n == 0: everything after the last layer).
        params = list(model.named_parameters())
        in_stack = [i for i, (name, _) in enumerate(params) if name.startswith(f"{stack_name}.")]
        first_trained = f"{stack_name}.{len(stack) - n}."
        start = (
            next(i for i, (name, _) in enumerate(params) if name.startswith(first_trained))
            if n
            else in_stack[-1] + 1
        )
        for _, p in params[start:]:
            p.requires_grad_(True)
        return model
