"""A fused forward and backward for peft's LoRA linear layers: the same function, fewer passes over memory.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate autograd ops. For every adapted
layer that draws a float Bernoulli mask the size of the input, writes the dropped input, keeps it for the
backward pass, and makes two more full-size passes for the scaling multiply and the add. On a CPU those
elementwise passes and the mask draw cost about a quarter of a LoRA step on SmolLM2 (measured with the torch
profiler; bench/chat.py shows the end-to-end effect).

Here one autograd function does the same maths:
    h   = (x * keep) @ A.T / (1 - p)          keep ~ Bernoulli(1 - p), drawn from 16-bit random lanes
    out = x @ W.T + b + scaling * h @ B.T      (an addmm into the base output)
and its backward computes the gradients of x, A and B by hand. It saves only the input (which the graph holds
anyway), a one-byte keep mask and the rank-r `h`, instead of a full-size float copy of the dropped input.

Under bf16 autocast (train.precision) it also does what autocast would do, once instead of per layer: the
frozen base weight is cast once and kept (models/compute_copy.py; autocast casts it again on every call), the
layers that read one input (q, k, v; gate, up) share its cast and its dropout mask, and the output stays in
bf16.
Each layer's input is still dropped with probability p (rounded to a multiple of 1/65536); the masks of
layers reading one input are the same draw, where peft draws each apart. Measured on the chat LoRA step:
bench/profile_step.py.

`fuse_lora_layers` swaps the forward of each eligible peft `lora.Linear`: a plain `nn.Linear` base with frozen
weights, vanilla LoRA (no DoRA or other variant, no LoRA bias). At call time the fused path runs only for a
single active adapter that is not merged or disabled; anything else goes through peft's own forward, so peft's
features (merging, adapter switching, mixed batches) keep working. Parameters are untouched: saving, loading
and merging are plain peft. tests/unit/test_lora_fused.py checks outputs and gradients against peft and the
gradients against finite differences, dropout included.
"""

from __future__ import annotations

import math
import types
import weakref
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.models.compute_copy import weights_in


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, x2, dropped, weight, bias, lora_a, lora_b, scaling: float, keep, p: float):
        """`x2`: x as (tokens, features) in the compute dtype; `dropped`: x2 with the dropout's zeros (x2 itself
        without dropout); `keep`: the dropout's keep mask (bool, x2's shape) or None without dropout; `p`: the
        drop probability it was drawn with. `weight` and `bias` are already in the compute dtype."""
        shape = x.shape
        ctx.a_dtype, ctx.b_dtype = lora_a.dtype, lora_b.dtype
        lora_a, lora_b = lora_a.to(x2.dtype), lora_b.to(x2.dtype)
        out = F.linear(x2, weight, bias)
        h = dropped @ lora_a.t()
        if keep is not None:
            h.mul_(1.0 / (1.0 - p))
        out.addmm_(h, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(dropped, weight, lora_a, lora_b, h, keep)
        ctx.scaling, ctx.p, ctx.shape, ctx.in_dtype = scaling, p, shape, x.dtype
        # in the compute dtype, as autocast's own linear answers
        return out.view(*shape[:-1], -1)

    @staticmethod
    def backward(ctx: Any, grad_out):
        dropped, weight, lora_a, lora_b, h, keep = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(h.dtype)
        # d out / d h = scaling * B; the 1/(1-p) of h's definition moves onto the rank-r gradient.
        gh = (g @ lora_b).mul_(ctx.scaling)
        grad_b = (g.t() @ h).mul_(ctx.scaling) if ctx.needs_input_grad[6] else None
        if keep is not None:
            gh.mul_(1.0 / (1.0 - ctx.p))
        grad_a = None
        if ctx.needs_input_grad[5]:
            grad_a = gh.t() @ dropped
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g @ weight
            if keep is None:
                grad_x.addmm_(gh, lora_a)
            else:
                grad_x.add_(torch.where(keep, gh @ lora_a, 0.0))
            grad_x = grad_x.view(ctx.shape).to(ctx.in_dtype)
        return (
            grad_x,
            None,
            None,
            None,
            None,
            None if grad_a is None else grad_a.to(ctx.a_dtype),
            None if grad_b is None else grad_b.to(ctx.b_dtype),
            None,
            None,
            None,
        )


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A Bernoulli(1 - p) keep mask and the drop probability it has: p rounded to a multiple of 1/65536.

    Drawn as 16-bit lanes of full-range 64-bit random words (four lanes a word) compared with a threshold:
    about three times faster on a CPU than torch.rand's one float per element, which was 11% of a bf16 chat
    LoRA step (bench/profile_step.py)."""
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = round(p * 65536)
    keep = words.view(torch.int16)[:count].view(shape) >= threshold - 32768
    return keep, threshold / 65536


class _SharedInput:
    """What the adapted layers of one model that read the same input tensor share within a call: the input in
    the compute dtype and the dropout mask. q, k and v read one normed hidden state, gate and up another; each
    is still dropped with probability p, the masks of those layers are the same draw (peft draws each layer's
    apart). Only the last input is held (weakly): the layers sharing one are called one after another."""

    def __init__(self) -> None:
        self.source: weakref.ref | None = None
        self.key: tuple = ()
        self.x2: torch.Tensor | None = None
        self.dropped: torch.Tensor | None = None
        self.keep: torch.Tensor | None = None
        self.p = 0.0

    def of(
        self, x: torch.Tensor, dtype: torch.dtype, p: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
        """x as (tokens, features) in `dtype`, the same with the dropout's zeros, the keep mask (None without
        dropout) and the drop probability it was drawn with."""
        key = (-1 if x.is_inference() else x._version, dtype, p, torch.is_grad_enabled())
        if self.source is None or self.source() is not x or self.key != key:
            x2 = x.detach().reshape(-1, x.shape[-1]).to(dtype)
            keep, drop = keep_mask(x2.shape, p, x2.device) if p > 0 else (None, 0.0)
            self.dropped = x2 if keep is None else torch.where(keep, x2, 0.0)
            self.source, self.key, self.x2, self.keep, self.p = weakref.ref(x), key, x2, keep, drop
        return self.x2, self.dropped, self.keep, self.p  # type: ignore[return-value]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _fused_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """peft's lora.Linear.forward, fused where the call is plain LoRA on one active adapter."""
    active = self.active_adapters
    if (
        args
        or kwargs
        or self.disable_adapters
        or self.merged
        or len(active) != 1
        or active[0] not in self.lora_A
        or active[0] in self.lora_variant
        or self.base_layer.weight.requires_grad
        or (self.base_layer.bias is not None and self.base_layer.bias.requires_grad)
    ):
        return self._peft_forward(x, *args, **kwargs)
    name = active[0]
    dropout = self.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    dtype = _compute_dtype(x)
    x2, dropped, keep, p = self._shared_input.of(x, dtype, p)
    weight, bias = weights_in(self.base_layer, dtype)
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    with torch.autocast(x.device.type, enabled=False):
        return _LoraLinear.apply(
            x, x2, dropped, weight, bias, lora_a, lora_b, float(self.scaling[name]), keep, p
        )


def fusable(module: torch.nn.Module) -> bool:
    from peft.tuners.lora.layer import Linear as LoraLinear

    return (
        type(module) is LoraLinear
        and isinstance(module.get_base_layer(), torch.nn.Linear)
        and not getattr(module, "fan_in_fan_out", False)
        and not any(getattr(module, "lora_bias", {}).values())
        and all(isinstance(d, (torch.nn.Dropout, torch.nn.Identity)) for d in module.lora_dropout.values())
    )


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Give every eligible peft LoRA linear layer the fused forward; returns how many were fused."""
    count = 0
    shared = _SharedInput()
    for module in model.modules():
        if fusable(module) and not hasattr(module, "_peft_forward"):
            module._shared_input = shared
            module._peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count
