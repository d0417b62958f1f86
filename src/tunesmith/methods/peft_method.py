"""What the methods peft implements share: build the method's peft config, wrap the model with it, save the
bare adapter (plus the task head) and load it back with `PeftModel.from_pretrained`. A method is then one
small file: its typed params and its config (lora.py, dora.py, ia3.py, loha.py, lokr.py)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import ConfigError
from tunesmith.methods.base import Method

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
"""Linear layers a low-rank method adapts when `method.target_modules` is empty."""


def model_type(model: torch.nn.Module) -> str:
    return getattr(getattr(model, "config", None), "model_type", "") or ""


def default_targets(model: torch.nn.Module, chosen: list[str] | str | None) -> list[str] | str:
    """`chosen`, else the architecture's attention and feed-forward projections, else every linear layer."""
    if chosen is not None:
        return chosen
    return DEFAULT_TARGETS.get(model_type(model), "all-linear")


class PeftMethod(Method):
    saves_full_model = False

    @abstractmethod
    def peft_config(self, model: torch.nn.Module, task_type: str | None, total_steps: int | None) -> Any:
        """The peft config of this method for `model` (task_type: peft's, e.g. SEQ_CLS, or None; total_steps:
        the optimizer steps training will take, None outside training)."""

    def wrapped(self, model: torch.nn.Module) -> torch.nn.Module:
        """A hook on the model peft returns (after `apply` and `load`); LoRA fuses its layers here."""
        return model

    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        from peft import get_peft_model

        try:
            config = self.peft_config(model, task_type, total_steps)
            return self.wrapped(get_peft_model(model, config))
        except ValueError as exc:  # peft's own refusal (e.g. target modules not found): say which method
            raise ConfigError(f"method {self.name}: {exc}") from None

    def load(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        from peft import PeftModel

        return self.wrapped(PeftModel.from_pretrained(load_base(None), folder))

    def merged(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        """The adapter folded into the base weights (peft's merge_and_unload); the task head comes along."""
        return self.load(folder, load_base).merge_and_unload()
