"""Resumable checkpoints, written atomically: a new folder is filled, renamed into place, then `latest`
is switched to it with an atomic file replace. A crash at any moment leaves the previous one intact.

Everything is stored without pickle: tensors in safetensors, the rest in JSON; the optimizer state goes
through torch.save and is read back with weights_only=True (tensors and plain containers only).

Weights and optimizer state are whole tensors keyed by parameter name (gathered from the shards under FSDP),
so a checkpoint resumes with any process count and either strategy.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tunesmith.errors import WriteFailed, is_write_failure
from tunesmith.files import write_json_atomic


@dataclass
class LoopState:
    """Where the loop is, and what it has seen: enough to continue exactly where it stopped."""

    epoch: int = 0
    batches_done: int = 0
    """Micro-batches of `epoch` already trained on."""
    step: int = 0
    """Optimizer steps taken."""
    best: float | None = None
    best_step: int | None = None
    tuned_best: float | None = None
    """The best validation metric of a checkpoint (the start model aside)."""
    tuned_best_share: float | None = None
    """That checkpoint's share of bootstrap resamples in which it beats the start model (None: not measured)."""
    start: float | None = None
    """The validation metric of the model training started from, when that model is the base model (then it
    competes with the checkpoints: best_step 0 means no checkpoint beat the base)."""
    start_predictions: list[Any] | None = None
    """The start model's validation predictions: each checkpoint is compared with them, example by example
    (train.keep_confidence); kept here so that a resumed run compares with the same ones."""
    evals_without_improvement: int = 0
    finished: bool = False
    stopped_early: bool = False


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state by parameter name, whole tensors on CPU. Under FSDP it is gathered on the main
    process (every process must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)  # type: ignore[return-value]


def save_checkpoint(
    root: Path,
    weights: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: Any,
    state: LoopState,
) -> Path:
    """`weights`: the trainable parameters' whole tensors; `optimizer`: `optimizer_state`'s dict."""
    name = base = f"step-{state.step:07d}-e{state.epoch}"
    # A step can be checkpointed twice (the last validation's, then the finished run's; again on a resume of
    # a finished run): a new name each time, so the folder `latest.json` points to is never replaced in
    # place, which a kill between removing it and renaming the new one in would leave pointing at nothing.
    copies = 1
    while (root / name).exists():
        copies += 1
        name = f"{base}-{copies}"
    tmp = root / f".{name}.tmp"
    try:
        return _write_checkpoint(root, name, tmp, weights, optimizer, scheduler, state)
    except Exception as exc:
        if not is_write_failure(exc):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteFailed(
            f"cannot write checkpoint {name} in {root} ({exc}); the previous checkpoint is kept, and "
            "`tunesmith train --out RUN --resume` continues from it once there is room"
        ) from None


def _write_checkpoint(
    root: Path,
    name: str,
    tmp: Path,
    weights: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: Any,
    state: LoopState,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, tmp / "trainable.safetensors")
    torch.save(optimizer, tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, tmp / "rng.safetensors")
    version, internal, gauss = random.getstate()
    extra = {
        "state": asdict(state),
        "scheduler": scheduler.state_dict(),
        "python_random": [version, list(internal), gauss],
    }
    (tmp / "state.json").write_text(json.dumps(extra), encoding="utf-8")
    os.replace(tmp, final)
    write_json_atomic(root / "latest.json", {"checkpoint": name})
    for old in root.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "latest.json"
    if not pointer.is_file():
        return None
    folder = root / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    return folder if folder.is_dir() else None


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> LoopState:
    weights = load_file(folder / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing or set(weights) - set(params):
        raise ValueError(f"checkpoint {folder} does not match the model (method or model changed?)")
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    whole = StateDictOptions(full_state_dict=True, strict=False)  # into plain or sharded parameters
    set_model_state_dict(model, weights, options=whole)
    moments = torch.load(folder / "optimizer.pt", weights_only=True)
    if all(isinstance(key, int) for key in moments["state"]):  # by position: written before names were used
        optimizer.load_state_dict(moments)
    else:
        set_optimizer_state_dict(model, optimizer, moments, options=whole)
    extra = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    scheduler.load_state_dict(extra["scheduler"])
    rng = load_file(folder / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all(
            [rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng]
        )
    version, internal, gauss = extra["python_random"]
    random.setstate((version, tuple(internal), gauss))
    return LoopState(**extra["state"])
