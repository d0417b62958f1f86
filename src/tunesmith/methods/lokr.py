"""LoKr (Kronecker product, from LyCORIS) via peft: the update is C kron (A B), a small dense factor times
a low-rank one; fewer parameters than LoRA at the same rank."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from tunesmith.methods import METHODS
from tunesmith.methods.peft_method import PeftMethod, default_targets
from tunesmith.plugin import PluginParams


class LokrParams(PluginParams):
    name: Literal["lokr"] = "lokr"
    rank: int = Field(8, gt=0)
    alpha: float = Field(16, gt=0)
    """Scale of the update is alpha / rank."""
    rank_dropout: float = Field(0.0, ge=0, lt=1)
    module_dropout: float = Field(0.0, ge=0, lt=1)
    decompose_factor: int = -1
    """Size of the Kronecker factor; -1 picks the one nearest the square root of the layer's width."""
    target_modules: list[str] | Literal["all-linear"] | None = None
    """Module names to adapt; empty takes the architecture's default (attention + feed-forward)."""


@METHODS.register("lokr")
class Lokr(PeftMethod):
    name = "lokr"
    Params = LokrParams
    default_learning_rate = 1e-3
    params: LokrParams

    def peft_config(self, model: torch.nn.Module, task_type: str | None) -> Any:
        from peft import LoKrConfig

        p = self.params
        return LoKrConfig(
            r=p.rank,
            alpha=p.alpha,
            rank_dropout=p.rank_dropout,
            module_dropout=p.module_dropout,
            decompose_factor=p.decompose_factor,
            target_modules=default_targets(model, p.target_modules),
            task_type=task_type,
        )
