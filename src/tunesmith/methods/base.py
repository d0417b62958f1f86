"""What a fine-tuning method is: make a model trainable, save what was trained, load it back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from tunesmith.plugin import PluginParams


class Method(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    default_learning_rate: ClassVar[float]
    """Peak learning rate used when the config leaves train.learning_rate empty."""
    task_learning_rates: ClassVar[dict[str, float]] = {}
    """Per-task exceptions to `default_learning_rate`, where a measurement chose another rate."""
    task_params: ClassVar[dict[str, dict[str, Any]]] = {}
    """Per-task exceptions to the Params' own defaults, where a measurement chose another value; the config
    applies them to the fields it leaves unset (a value the user writes always wins)."""
    saves_full_model: ClassVar[bool]
    """True: the run's model folder is a whole Hugging Face model. False: an adapter on the base model."""
    cannot_merge: ClassVar[str | None] = None
    """Why the trained weights cannot be folded into a plain model of the base architecture, or None."""
    cannot_shard: ClassVar[str | None] = None
    """Why this method cannot train with its parameters sharded across processes (FSDP), or None."""
    starts_as_base: ClassVar[bool] = True
    """The model this method makes trainable computes exactly what the base did until the first step (an
    update that starts at zero, or the weights themselves); False where it adds something that acts at once
    (prompt and prefix tuning's virtual tokens)."""
    merge_tolerance: ClassVar[float] = 1e-4
    """Largest logit difference accepted between the run's model and its merged export (summation order)."""
    preference: ClassVar[int] = 100
    """Where `tunesmith plan` ranks this method when several fit, lower first: LoRA first (near full
    fine-tuning quality on a few thousand examples at a fraction of the memory), whole-model training next,
    then ever smaller updates; a method not ranked yet comes last."""
    fallback: ClassVar[int | None] = None
    """Where this method stands among those a run over its memory budget is pointed to, lower first (tried
    in that order, each measured); None: never pointed to."""

    def __init__(self, params: PluginParams):
        self.params = params

    @classmethod
    def learning_rate_for(cls, task: str) -> float:
        """The peak learning rate this method starts `task` with when the config names none."""
        return cls.task_learning_rates.get(task, cls.default_learning_rate)

    @classmethod
    def fill_task_defaults(cls, task: str, params: PluginParams) -> PluginParams:
        """`params`, with this method's measured defaults for `task` set in the fields it left unset."""
        for field, value in cls.task_params.get(task, {}).items():
            if field not in params.model_fields_set:
                setattr(params, field, value)
        return params

    def load_kwargs(self, device: str) -> dict[str, Any]:
        """Extra `from_pretrained` arguments for the base model on `device` (QLoRA's quantization)."""
        return {}

    def incompatibility(self, task: Any) -> str | None:
        """Why this method cannot fine-tune `task` (its name, model_kind, scores_input_positions), or None.
        Asked before any weights load."""
        return None

    @abstractmethod
    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        """Return the model with exactly the parameters this method trains set to requires_grad.
        `task_type`: peft's task type of the task's new head (Task.peft_task_type: SEQ_CLS, QUESTION_ANS; None
        where there is none), which trains and is saved with the method's weights. `total_steps`: the
        optimizer steps training will take (a method with a schedule of its own needs it)."""

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        """A term the method adds to the mean training loss (AdaLoRA's orthogonality penalty), or None."""
        return None

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """Called after optimizer step `step` (1-based), before gradients are cleared."""

    def save(
        self, model: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Write the trained weights as safetensors in a folder that plain transformers/peft can load.
        `weights`: when the model's parameters are sharded across processes, their whole tensors (all of the
        state dict for a whole-model method, the trainable parameters otherwise)."""
        model.save_pretrained(folder, safe_serialization=True, state_dict=weights)

    def load(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        """Rebuild the trained model from `save`'s folder. `load_base(None)` loads the pretrained base,
        `load_base(path)` a whole model folder."""
        return load_base(str(folder))

    def merged(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        """The trained model as a plain model of the base architecture (for `export --format merged`);
        only called when `cannot_merge` is None. A whole-model method's model already is one."""
        return self.load(folder, load_base)


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
