"""LoHa (Hadamard product of two low-rank pairs, from LyCORIS) via peft: the update is (A1 B1) * (A2 B2),
which reaches rank r^2 with 2x LoRA's parameters at the same r."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from tunesmith.methods import METHODS
from tunesmith.methods.peft_method import PeftMethod, default_targets
from tunesmith.plugin import PluginParams


class LohaParams(PluginParams):
    name: Literal["loha"] = "loha"
    rank: int = Field(8, gt=0)
    alpha: float = Field(16, gt=0)
    """Scale of the update is alpha / rank."""
    rank_dropout: float = Field(0.0, ge=0, lt=1)
    """Drops rows of the update during training."""
    module_dropout: float = Field(0.0, ge=0, lt=1)
    """Drops the whole update of a layer during training."""
    target_modules: list[str] | Literal["all-linear"] | None = None
    """Module names to adapt; empty takes the architecture's default (attention + feed-forward)."""


@METHODS.register("loha")
class Loha(PeftMethod):
    preference = 4
    fallback = None
    name = "loha"
    Params = LohaParams
    default_learning_rate = 5e-4
    params: LohaParams

    def config_type(self) -> Any:
        from peft import LoHaConfig

        return LoHaConfig

    def extra_config(self) -> dict[str, Any]:
        """Keys a LyCORIS variant adds to the shared ones (LoKr's factor size)."""
        return {}

    def peft_config(self, model: torch.nn.Module, task_type: str | None, total_steps: int | None) -> Any:
        p = self.params
        return self.config_type()(
            r=p.rank,
            alpha=p.alpha,
            rank_dropout=p.rank_dropout,
            module_dropout=p.module_dropout,
            target_modules=default_targets(model, p.target_modules),
            task_type=task_type,
            **self.extra_config(),
        )
