"""AdaLoRA (Zhang et al. 2023) via peft: LoRA in SVD form (P diag(E) Q) that starts every layer at
`init_rank` and, while training, moves rank to the layers whose singular values matter most, down to an
average of `rank` per layer. Needs the number of training steps up front (the budget schedule) and a call
after every optimizer step; both come from the training loop. The orthogonality penalty on P and Q is added
to the training loss as peft's own forward would."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.methods.peft_method import PeftMethod, default_targets
from tunesmith.plugin import PluginParams


class AdaLoraParams(PluginParams):
    name: Literal["adalora"] = "adalora"
    rank: int = Field(8, gt=0)
    """Average rank per layer at the end of the budget schedule."""
    init_rank: int = Field(12, gt=0)
    """Rank every layer starts with."""
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] | None = None
    """Module names to adapt; empty takes the architecture's default (attention + feed-forward)."""
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of the training steps before rank moves (peft's tinit)."""
    final_fraction: float = Field(0.2, ge=0, lt=1)
    """Share of the training steps at the end with the ranks fixed (peft's tfinal)."""
    reallocate_every: int = Field(1, gt=0)
    """Steps between two reallocations (peft's deltaT)."""
    orthogonality_weight: float = Field(0.5, ge=0)
    """Weight of the penalty that keeps P and Q orthogonal."""

    @model_validator(mode="after")
    def _schedule(self) -> AdaLoraParams:
        if self.rank > self.init_rank:
            raise ValueError(f"rank ({self.rank}) must not exceed init_rank ({self.init_rank})")
        if self.warmup_fraction + self.final_fraction >= 1:
            raise ValueError("warmup_fraction + final_fraction must leave steps to move rank in (< 1)")
        return self


@METHODS.register("adalora")
class AdaLora(PeftMethod):
    preference = 3
    fallback = None
    name = "adalora"
    Params = AdaLoraParams
    default_learning_rate = 1e-3
    cannot_shard = (
        "its rank budget and orthogonality penalty work on whole matrices, outside the forward pass"
    )
    params: AdaLoraParams

    def peft_config(self, model: torch.nn.Module, task_type: str | None, total_steps: int | None) -> Any:
        from peft import AdaLoraConfig

        p = self.params
        if not total_steps:
            raise ConfigError(
                "method adalora needs the number of training steps (it schedules its rank budget)"
            )
        tinit = int(p.warmup_fraction * total_steps)
        tfinal = min(int(p.final_fraction * total_steps), total_steps - tinit - 1)
        return AdaLoraConfig(
            target_r=p.rank,
            init_r=p.init_rank,
            lora_alpha=p.alpha,
            lora_dropout=p.dropout,
            target_modules=default_targets(model, p.target_modules),
            task_type=task_type,
            total_step=total_steps,
            tinit=tinit,
            tfinal=max(tfinal, 0),
            deltaT=p.reallocate_every,
            orth_reg_weight=p.orthogonality_weight,
        )

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        """peft's orthogonality penalty: the mean Frobenius distance of P Pᵀ and Qᵀ Q from the identity."""
        terms = []
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_A" in name or "lora_B" in name):
                cov = p @ p.T if "lora_A" in name else p.T @ p
                terms.append(torch.linalg.matrix_norm(cov - torch.eye(len(cov), device=cov.device)))
        if not terms or self.params.orthogonality_weight == 0:
            return None
        return self.params.orthogonality_weight * torch.stack(terms).mean()

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        model.base_model.update_and_allocate(step)
