"""LoRA via peft: low-rank updates on chosen linear layers; the task head is trained in full and saved with
the adapter. The saved folder is a plain peft adapter (`PeftModel.from_pretrained(base, folder)`)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.methods.base import layer_stack
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
    layers: int | float | None = None
    """Adapt only the top blocks of the layer stack (peft's layers_to_transform): a whole number N, the top N;
    a share in (0, 1), that share of the blocks rounded up (0.5 of MiniLM's 6: the top 3). Empty adapts every
    block. The blocks below then train nothing: an encoder's run computes them once per text
    (train.frozen_cache_mb), and neither their forward nor their backward pass is repeated."""

    fused: bool = True
    """Run the adapted linear layers through one fused forward/backward (methods/lora_fused.py): the same
    maths with fewer passes over memory. `false` keeps peft's own layer forward."""

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, float) and value.is_integer() and value >= 1:
            value = int(value)
        if isinstance(value, int) and value < 1 or isinstance(value, float) and not 0 < value < 1:
            raise ValueError("a number of layers (1 or more) or a share between 0 and 1")
        return value


@METHODS.register("lora")
class Lora(PeftMethod):
    preference = 0
    fallback = 0
    name = "lora"
    Params = LoraParams
    default_learning_rate = 5e-4
    task_learning_rates = {"classification": 2e-3, "tokens": 2e-3, "regression": 1e-3, "multilabel": 1e-3}
    """On the quality panel (MiniLM, one seed, README "Quality"; measured with the head started from the
    probe) 2e-3 beat 5e-4 on four of six classification sets (+0.007 to +0.019 macro-F1), tied on one (both
    runs kept the base) and lost 0.005 on one. The text-writing tasks keep 5e-4. So does preference tuning:
    over three sets of Debian pairs (bench/preference_defaults.py, DPO, one seed, 96 pairs, 1 epoch), 1e-4,
    5e-4 and 1e-3 all rank 0.90 to 1.0 of the held-out pairs right by reward; the model's own preference for
    the chosen answer averages 0.842, 0.867 and 0.892, and the KL to the reference 0.007, 0.25 and 0.75 nats
    per token: 1e-3 buys one more pair in 40 on two sets (none on the third) for three times the drift.
    The other encoder tasks, with the top half of the layers adapted (`task_params`), on their shipped sets
    (bench/tasks.py, seed 1): regression Pearson 0.737 at 5e-4, 0.742 at 1e-3, 0.739 at 2e-3;
    multi-label macro-F1 0.510 at 5e-4, 0.521 at 1e-3; entities F1 0.916 at 2e-3 (the rate its demo was
    tuned at with every layer adapted)."""
    top_half: ClassVar[dict[str, Any]] = {"dropout": 0.0, "layers": 0.5}
    task_params = {
        "classification": {"dropout": 0.0},
        "regression": top_half,
        "multilabel": top_half,
        "tokens": top_half,
    }
    """On the quality panel (MiniLM, seeds 1-3, README "Quality"; bench/results/quality-lora-dropout.json)
    dropout 0 instead of 0.1 trained classification 1.18 to 1.28x as fast (no mask to draw per adapted
    layer) with 4 to 9% less peak memory, and scored +0.002 to +0.015 mean test macro-F1 on four sets,
    tied on one and lost 0.008 on one (ACL sentences: one seed of three 0.027 lower).
    Regression, multi-label and entities adapt the top half of the layers (`layers` 0.5) without dropout: the
    bottom half then runs once per text (training/frozen_prefix.py). On their shipped sets (bench/tasks.py,
    README "Encoder tasks vs the Trainer's example recipes", MiniLM, seed 1) against every layer adapted with
    dropout 0.1: regression 2.9x the samples/s (230 vs 79) for Pearson 0.737 vs 0.763, entities 2.1x (107 vs
    50) for F1 0.916 vs 0.928, multi-label 2.8x (113 vs 41) for macro-F1 0.510 vs 0.529 (at 5e-4); the top 4
    of 6 layers gave Pearson 0.744 at 1.6x. A user who wants every layer back writes `method.layers=null`."""
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
            **self.layer_choice(model),
        )

    def layer_choice(self, model: torch.nn.Module) -> dict[str, Any]:
        """peft's layers_to_transform and layers_pattern for `method.layers` (nothing when it is empty)."""
        chosen = self.params.layers
        if chosen is None:
            return {}
        stack_name, stack = layer_stack(model)
        n = math.ceil(chosen * len(stack)) if isinstance(chosen, float) else chosen
        if n > len(stack):
            raise ConfigError(f"method.layers={n}, but the model has only {len(stack)} layers")
        return {
            "layers_to_transform": list(range(len(stack) - n, len(stack))),
            "layers_pattern": stack_name.rsplit(".", 1)[-1],
        }

    def wrapped(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.params.fused:
            fuse_lora_layers(model)  # layers it cannot fuse (DoRA's) keep peft's forward
        return model
