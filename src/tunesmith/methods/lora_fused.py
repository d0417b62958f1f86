"""A fused forward and backward for peft's LoRA linear layers: the same function, fewer passes over memory.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate autograd ops. For every adapted
layer that draws a float Bernoulli mask the size of the input, writes the dropped input, keeps it for the
backward pass, and makes two more full-size passes for the scaling multiply and the add. On a CPU those
elementwise passes and the mask draw cost about a quarter of a LoRA step on SmolLM2 (measured with the torch
profiler; bench/chat.py shows the end-to-end effect).

Here one autograd function does the same maths:
    h   = (x * keep) @ A.T / (1 - p)          keep ~ Bernoulli(1 - p), drawn as rand >= p
    out = x @ W.T + b + scaling * h @ B.T      (an addmm into the base output)
and its backward computes the gradients of x, A and B by hand. It saves only the input (which the graph holds
anyway), a one-byte keep mask and the rank-r `h`, instead of a full-size float copy of the dropped input.
Dropout masks are independent per layer, as in peft; the distribution is the same, the random stream is not.

`fuse_lora_layers` swaps the forward of each eligible peft `lora.Linear`: a plain `nn.Linear` base with frozen
weights, vanilla LoRA (no DoRA or other variant, no LoRA bias). At call time the fused path runs only for a
single active adapter that is not merged or disabled; anything else goes through peft's own forward, so peft's
features (merging, adapter switching, mixed batches) keep working. Parameters are untouched: saving, loading
and merging are plain peft. tests/unit/test_lora_fused.py checks outputs and gradients against peft and the
gradients against finite differences, dropout included.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, weight, bias, lora_a, lora_b, scaling: float, p: float, dtype):
        out_dtype = x.dtype
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        weight, lora_a, lora_b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        out = F.linear(x2, weight, None if bias is None else bias.to(dtype))
        if p > 0:
            keep = torch.rand(x2.shape, device=x2.device) >= p
            h = torch.where(keep, x2, 0.0) @ lora_a.t()
            h.mul_(1.0 / (1.0 - p))
        else:
            keep = None
            h = x2 @ lora_a.t()
        out.addmm_(h, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, h, keep)
        ctx.scaling, ctx.p, ctx.shape = scaling, p, shape
        ctx.in_dtype = out_dtype
        return out.view(*shape[:-1], -1).to(out_dtype)

    @staticmethod
    def backward(ctx: Any, grad_out):
        x2, weight, lora_a, lora_b, h, keep = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(h.dtype)
        # d out / d h = scaling * B; the 1/(1-p) of h's definition moves onto the rank-r gradient.
        gh = (g @ lora_b).mul_(ctx.scaling)
        grad_b = (g.t() @ h).mul_(ctx.scaling) if ctx.needs_input_grad[4] else None
        if ctx.p > 0:
            gh.mul_(1.0 / (1.0 - ctx.p))
        grad_a = None
        if ctx.needs_input_grad[3]:
            grad_a = gh.t() @ (x2 if keep is None else torch.where(keep, x2, 0.0))
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
            None if grad_a is None else grad_a.to(lora_a.dtype),
            None if grad_b is None else grad_b.to(lora_b.dtype),
            None,
            None,
            None,
        )


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
    with torch.autocast(x.device.type, enabled=False):
        return _LoraLinear.apply(
            x,
            self.base_layer.weight,
            self.base_layer.bias,
            self.lora_A[name].weight,
            self.lora_B[name].weight,
            float(self.scaling[name]),
            float(p),
            dtype,
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
    for module in model.modules():
        if fusable(module) and not hasattr(module, "_peft_forward"):
            module._peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count
