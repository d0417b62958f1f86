"""FSDP (`distributed.strategy: fsdp`): torch's own fully_shard (FSDP2) splits every parameter, its gradient
and its optimizer state across the processes; each transformer block is gathered for its forward and
backward passes and freed after, and the gradients are reduce-scattered back to their shards.

The loop stays the one in loop.py. What changes:
- gradients are summed over the processes (divide factor 1), not averaged: the loop divides by the window's
  token or example count, as with one process;
- every process must run the same number of forward and backward passes (each gathers from all), so a
  process left without a micro-batch in an epoch's short last window runs a zero-weight one;
- saving gathers full tensors first (a collective: every process calls it, the main one writes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from tunesmith.methods.base import layer_stack

T = TypeVar("T")


class ShardedLoss(torch.nn.Module):
    """The FSDP root: a module whose forward is the task's loss on the model. FSDP gathers a unit's parameters
    in that unit's forward; making the loss the root's forward gathers the parameters outside the blocks
    (embeddings, head, adapters there) however the task reaches them (a generative task runs the backbone
    and the head apart, to score the answer tokens only)."""

    def __init__(self, task: Any, model: torch.nn.Module):
        super().__init__()
        self.task, self.model = task, model

    def forward(
        self, batch: dict[str, torch.Tensor] | None = None, run: Callable[[], T] | None = None
    ) -> tuple[torch.Tensor, int] | T:
        """The task's loss on `batch`; or `run()`, a block that calls the model itself (evaluation), which
        then runs inside the root's forward: FSDP's root pre-forward sets every unit up and gathers the
        root's parameters (a block's forward run first would take that block for the root)."""
        if run is not None:
            return run()
        return self.task.loss(self.model, batch)


def shard(task: Any, model: torch.nn.Module, device: torch.device) -> ShardedLoss:
    """Shard `model` in place across all processes: each transformer block is one unit, the rest (embeddings,
    head, adapters outside the blocks) the root unit, whose forward is the task's loss."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    _, blocks = layer_stack(model)
    for block in blocks:
        fully_shard(block, mesh=mesh)
    root = ShardedLoss(task, model)
    fully_shard(root, mesh=mesh)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # a sum; the loop divides by the global count
            module.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PREMUL_SUM)
    return root


def set_gradient_sync(root: ShardedLoss, sync: bool) -> None:
    """Off: backward accumulates this process's gradients unreduced (all but a window's last micro-batch)."""
    root.set_requires_gradient_sync(sync)  # type: ignore[operator]


def through_root(root: ShardedLoss, run: Callable[[], T]) -> T:
    """`run()`, a block that calls the model itself, not the loss (evaluation, generation), with the root unit
    (embeddings, head) gathered for it; the blocks still gather themselves in their forward. The root is
    sharded again after, as training expects it (its next forward gathers it)."""
    try:
        return root(run=run)
    finally:
        root.reshard()  # type: ignore[operator]


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (a collective), or the tensor itself when it is not sharded."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Whole CPU copies of the trainable parameters, by name. Sharded: every process must call it."""
    return {
        name: full_tensor(p.detach()).cpu().contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def all_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict on CPU, gathered on the main process (empty on the others): every process must
    call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
