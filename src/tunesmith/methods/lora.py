"""LoRA via peft: low-rank updates on chosen linear layers; the task head is trained in full and saved with
the adapter. The saved folder is a plain peft adapter (`PeftModel.from_pretrained(base, folder)`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from tunesmith.methods import METHODS
from tunesmith.methods.base import Method
from tunesmith.methods.lora_fused import fuse_lora_layers
from tunesmith.plugin import PluginParams

DEFAULT_TARGETS: dict[str, list[str]] = {
    # All attention projections and both feed-forward projections of each block.
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "electra": ["query", "key", "value", "dense"],
    "mpnet": ["q", "k", "v", "o", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "t5": ["q", "k", "v", "o", "wi", "wo"],
}

PEFT_TASK_TYPES = {"classification": "SEQ_CLS"}


class LoraParams(PluginParams):
    name: Literal["lora"] = "lora"
    rank: int = Field(8, gt=0)
    """Rank r of the low-rank update; trainable parameters grow linearly with it."""
    alpha: float = Field(16, gt=0)
    """Scale of the update is alpha / rank."""
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] | None = None
    """Module names to adapt; empty takes the architecture's default (attention + feed-forward)."""
    fused: bool = True
    """Run the adapted linear layers through one fused forward/backward (methods/lora_fused.py): the same
    maths with fewer passes over memory. `false` keeps peft's own layer forward."""


@METHODS.register("lora")
class Lora(Method):
    name = "lora"
    Params = LoraParams
    default_learning_rate = 5e-4
    saves_full_model = False
    params: LoraParams

    def targets(self, model: torch.nn.Module) -> list[str] | str:
        if self.params.target_modules is not None:
            return self.params.target_modules
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        return DEFAULT_TARGETS.get(model_type, "all-linear")

    def apply(self, model: torch.nn.Module, task_name: str) -> torch.nn.Module:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=self.params.rank,
            lora_alpha=self.params.alpha,
            lora_dropout=self.params.dropout,
            target_modules=self.targets(model),
            task_type=PEFT_TASK_TYPES.get(task_name),
        )
        return self._fuse(get_peft_model(model, config))

    def _fuse(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.params.fused:
            fuse_lora_layers(model)
        return model

    def load(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        from peft import PeftModel

        return self._fuse(PeftModel.from_pretrained(load_base(None), folder))
