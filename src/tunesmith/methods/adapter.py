"""Bottleneck adapters (Houlsby et al. 2019): a small down-projection, a nonlinearity and an up-projection,
added to the output of each block's attention output projection and feed-forward output projection, before
the residual sum: `y + up(act(down(y)))`. The base model is frozen; the adapters and the task head train.

peft has no bottleneck adapter (AdapterHub's `adapters` package pins older transformers), so this is our own
small module. It is attached to each chosen linear layer as a submodule named `adapter` with a forward hook,
so the base weights keep their names and the saved folder holds only what was trained:
`adapter_model.safetensors` (adapters + head) and `tunesmith_adapter.json` (the placement). The up-projection
starts at zero, so an untrained adapter is the base model exactly. The adapter adds layers the base
architecture does not have: it cannot be merged into the base weights (export it as `adapter` or `onnx`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from tunesmith.errors import ConfigError
from tunesmith.methods import METHODS
from tunesmith.methods.base import Method, freeze_all
from tunesmith.methods.peft_method import model_type
from tunesmith.plugin import PluginParams

PLACEMENT: dict[str, list[str]] = {
    # The output projection of each block's attention and of its feed-forward network (name suffixes).
    "bert": ["output.dense"],  # layer.N.attention.output.dense and layer.N.output.dense
    "roberta": ["output.dense"],
    "xlm-roberta": ["output.dense"],
    "electra": ["output.dense"],
    "mpnet": ["attn.o", "output.dense"],
    "distilbert": ["attention.out_lin", "ffn.lin2"],
    "llama": ["self_attn.o_proj", "mlp.down_proj"],
    "gemma3_text": ["self_attn.o_proj", "mlp.down_proj"],
    "gpt2": ["attn.c_proj", "mlp.c_proj"],
    "t5": ["SelfAttention.o", "EncDecAttention.o", "DenseReluDense.wo"],
}
HEADS = ("classifier", "score", "qa_outputs")
"""New task heads, trained in full with the adapters (a text-writing task keeps its pretrained LM head)."""
WEIGHTS = "adapter_model.safetensors"
PLACEMENT_FILE = "tunesmith_adapter.json"
ACTIVATIONS: dict[str, Callable[[], torch.nn.Module]] = {
    "gelu": torch.nn.GELU,
    "relu": torch.nn.ReLU,
    "silu": torch.nn.SiLU,
}


class AdapterParams(PluginParams):
    name: Literal["adapter"] = "adapter"
    size: int = Field(32, gt=0)
    """Bottleneck width: each adapter has 2 x hidden x size + hidden + size parameters."""
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the bottleneck's hidden units during training."""
    target_modules: list[str] | None = None
    """Name suffixes of the linear layers to put adapters after; empty: the architecture's attention and
    feed-forward output projections."""


class Bottleneck(torch.nn.Module):
    def __init__(self, width: int, size: int, activation: str, dropout: float):
        super().__init__()
        self.down = torch.nn.Linear(width, size)
        self.act = ACTIVATIONS[activation]()
        self.dropout = torch.nn.Dropout(dropout)
        self.up = torch.nn.Linear(size, width)
        torch.nn.init.normal_(self.down.weight, std=1e-2)
        torch.nn.init.zeros_(self.down.bias)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.up(self.dropout(self.act(self.down(y))))


def _add_adapter(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return module.adapter(output)


def output_width(layer: torch.nn.Module) -> int:
    """Output features of a linear layer: torch's Linear (out, in) or GPT-2's Conv1D (in, out)."""
    if isinstance(layer, torch.nn.Linear):
        return layer.out_features
    nf = getattr(layer, "nf", None)  # transformers' Conv1D
    if isinstance(nf, int):
        return nf
    raise ConfigError(f"method adapter: {type(layer).__name__} is not a linear layer")


@METHODS.register("adapter")
class Adapter(Method):
    preference = 6
    fallback = None
    name = "adapter"
    Params = AdapterParams
    default_learning_rate = 1e-3
    saves_full_model = False
    cannot_merge = (
        "bottleneck adapters are layers the base architecture does not have (a nonlinearity between two "
        "projections cannot be folded into one weight); export it with --format adapter, or onnx for a "
        "classifier"
    )
    params: AdapterParams

    def targets(self, model: torch.nn.Module) -> list[str]:
        if self.params.target_modules:
            return self.params.target_modules
        kind = model_type(model)
        if kind not in PLACEMENT:
            raise ConfigError(
                f"method adapter: no default placement for {kind or type(model).__name__} models; "
                "name the output projections in method.target_modules"
            )
        return PLACEMENT[kind]

    def apply(
        self, model: torch.nn.Module, task_type: str | None, total_steps: int | None = None
    ) -> torch.nn.Module:
        freeze_all(model)
        suffixes = self.targets(model)
        chosen = [
            (name, module)
            for name, module in model.named_modules()
            if any(name == s or name.endswith("." + s) for s in suffixes)
        ]
        if not chosen:
            raise ConfigError(f"method adapter: no layer of the model is named like {suffixes}")
        weight = next(model.parameters())
        p = self.params
        for _, layer in chosen:
            layer.adapter = Bottleneck(output_width(layer), p.size, p.activation, p.dropout).to(
                device=weight.device, dtype=weight.dtype if weight.is_floating_point() else torch.float32
            )
            layer.register_forward_hook(_add_adapter)
        for head in HEADS:
            module = getattr(model, head, None)
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(True)
        return model

    def save(
        self, model: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor] | None = None
    ) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        trained = weights or {
            name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad
        }
        save_file(trained, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / PLACEMENT_FILE).write_text(
            json.dumps({"method": self.params.model_dump(), "task_heads": list(HEADS)}, indent=2) + "\n"
        )

    def load(self, folder: Path, load_base: Callable[[str | None], torch.nn.Module]) -> torch.nn.Module:
        from safetensors.torch import load_file

        model = self.apply(load_base(None), None)
        weights = load_file(str(folder / WEIGHTS))
        missing = [
            name for name, _ in model.named_parameters() if ".adapter." in name and name not in weights
        ]
        unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
        if missing or unexpected:
            raise ConfigError(
                f"{folder / WEIGHTS} does not fit this base model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model
