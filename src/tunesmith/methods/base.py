"""What a fine-tuning method is: make a model trainable, save what was trained, load it back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch

from tunesmith.plugin import PluginParams


class Method(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    default_learning_rate: ClassVar[float]
    """Peak learning rate used when the config leaves train.learning_rate empty."""
    saves_full_model: ClassVar[bool]
    """True: the run's model folder is a whole Hugging Face model. False: an adapter on the base model."""

    def __init__(self, params: PluginParams):
        self.params = params

    @abstractmethod
    def apply(self, model: torch.nn.Module, task_name: str) -> torch.nn.Module:
        """Return the model with exactly the parameters this method trains set to requires_grad."""

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """Write the trained weights as safetensors in a folder that plain transformers/peft can load."""
        model.save_pretrained(folder, safe_serialization=True)

    def load(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        """Rebuild the trained model from `save`'s folder. `load_base(None)` loads the pretrained base,
        `load_base(path)` a whole model folder."""
        return load_base(str(folder))


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights are counted once."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def layer_stack(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The model's list of transformer blocks: its longest ModuleList (BERT's encoder.layer,
    Llama's model.layers, GPT-2's h, T5's block...)."""
    best: tuple[str, torch.nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")
    return best


def freeze_all(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
