"""LoRA via peft: low-rank updates on chosen linear layers; the task head is trained in full and saved with
the adapter. The saved folder is a plain peft adapter (`PeftModel.from_pretrained(base, folder)`)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from tunesmith.methods import METHODS
from tunesmith.methods.lora_fused import fuse_lora_layers
from tunesmith.methods.peft_method import DEFAULT_TARGETS, PeftMethod, default_targets
from tunesmith.plugin import PluginParams

__all__ = ["DEFAULT_TARGETS", "Lora", "LoraParams"]


class LoraParams(PluginParams):
    name: Literal["lora"] = "lora"
    rank: int = Field(8, gt=0)
    """Rank r of the low-rank update; trainable parameters grow linearly with it."""
    alpha: float = Field(16, gt=0)
    """Scale of the update is alpha / rank."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on each adapted layer's input (peft's lora_dropout). Classification starts at 0
    (`Lora.task_params`); the text-writing tasks keep 0.1, peft's and TRL's usual value."""
    target_modules: list[str] | Literal["all-linear"] | None = None
    """Module names to adapt; empty takes the architecture's default (attention + feed-forward)."""
    fused: bool = True
    """Run the adapted linear layers through one fused forward/backward (methods/lora_fused.py): the same
    maths with fewer passes over memory. `false` keeps peft's own layer forward."""


@METHODS.register("lora")
class Lora(PeftMethod):
    preference = 0
    fallback = 0
    name = "lora"
    Params = LoraParams
    default_learning_rate = 5e-4
    task_learning_rates = {"classification": 2e-3}
    """On the quality panel (MiniLM, one seed, README "Quality"; measured with the head started from the
    probe) 2e-3 beat 5e-4 on four of six classification sets (+0.007 to +0.019 macro-F1), tied on one (both
    runs kept the base) and lost 0.005 on one. The text-writing tasks keep 5e-4. So does preference tuning:
    over three sets of Debian pairs (bench/preference_defaults.py, DPO, one seed, 96 pairs, 1 epoch), 1e-4,
    5e-4 and 1e-3 all rank 0.90 to 1.0 of the held-out pairs right by reward; the model's own preference for
    the chosen answer averages 0.842, 0.867 and 0.892, and the KL to the reference 0.007, 0.25 and 0.75 nats
    per token: 1e-3 buys one more pair in 40 on two sets (none on the third) for three times the drift."""
    task_params = {"classification": {"dropout": 0.0}}
    """On the quality panel (MiniLM, seeds 1-3, README "Quality"; bench/results/quality-lora-dropout.json)
    dropout 0 instead of 0.1 trained classification 1.18 to 1.28x as fast (no mask to draw per adapted
    layer) with 4 to 9% less peak memory, and scored +0.002 to +0.015 mean test macro-F1 on four sets,
    tied on one and lost 0.008 on one (ACL sentences: one seed of three 0.027 lower)."""
    params: LoraParams
    use_dora = False

    def targets(self, model: torch.nn.Module) -> list[str] | str:
        return default_targets(model, self.params.target_modules)

    def peft_config(self, model: torch.nn.Module, task_type: str | None, total_steps: int | None) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.params.rank,
            lora_alpha=self.params.alpha,
            lora_dropout=self.params.dropout,
            target_modules=self.targets(model),
            task_type=task_type,
            use_dora=self.use_dora,
        )

    def wrapped(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.params.fused:
            fuse_lora_layers(model)  # layers it cannot fuse (DoRA's) keep peft's forward
        return model
