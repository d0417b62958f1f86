"""What a training run is set up with, decided once for `train`, `plan` and `tune` alike: the device, the
mixed precision, and the trainable model (base loaded, head started, method applied, activation
checkpointing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunesmith.config import RunConfig
from tunesmith.errors import UserError
from tunesmith.hardware import cpu_features
from tunesmith.methods import Method
from tunesmith.sections import TrainConfig
from tunesmith.tasks import Task


def training_device(config: RunConfig) -> torch.device:
    """Where training runs: a CUDA GPU when there is one, unless train.device says cpu (accelerate is told
    the same; train.device=cuda without a GPU is refused before)."""
    wanted = config.train.device
    return torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")


def mixed_precision(name: str, device: torch.device) -> str:
    """train.precision as accelerate names it. auto: bf16 autocast on a GPU that supports it and on a CPU that
    runs bf16 natively (AVX512-BF16, AMX-BF16, Arm BF16: hardware.cpu_features), else full precision: without
    those instructions bf16 is emulated and many times slower than fp32."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "no"
        return "bf16" if cpu_features().native_bf16 else "no"
    return {"fp32": "no"}.get(name, name)


def precision_warning(name: str, device: torch.device) -> str | None:
    """What to tell a user who asked for bf16 on a CPU without native bf16, where torch emulates it (no
    oneDNN bf16 kernels): measured on an AVX2 EPYC, a 512x576x576 linear runs at 7 GFLOP/s in bf16 against
    39 in fp32, a 2048x2048 matmul at 0.27 against 89. None where the choice is sound."""
    if device.type != "cpu" or name != "bf16" or cpu_features().native_bf16:
        return None
    return (
        f"train.precision is bf16, but this CPU ({cpu_features().describe()}) has no bf16 instructions: "
        "its bf16 matrix products are emulated, 5 to 300 times slower than fp32; precision auto (the default) "
        "picks fp32 here"
    )


def build_model(
    task: Task,
    resolved: Any,
    method: Method,
    cfg: TrainConfig,
    device: torch.device,
    steps: int,
    *,
    head: Path | None = None,
    sharded: bool = False,
) -> tuple[torch.nn.Module, bool]:
    """The model training starts from, and whether it computes what the base model does: the base loaded as
    the method needs it, its head started from what the baseline saved at `head` (task.init_head), moved to
    `device` (sharded, each unit's shard moves there when it is cut: the whole never does), the method
    applied, activation checkpointing on when train.gradient_checkpointing says so."""
    base = task.load_model(resolved, **method.load_kwargs(str(device)))
    starts_as_base = task.init_head(base, head)
    if not getattr(base, "is_quantized", False) and not sharded:
        base = base.to(device)
    model = method.apply(base, task.peft_task_type, steps)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    task.prepare_model(model)
    return model, starts_as_base


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """transformers' activation checkpointing on the model's layers (non-reentrant, so frozen embeddings under
    an adapter need no input-gradient hooks)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise UserError(f"{type(base).__name__} does not support train.gradient_checkpointing")
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
