"""RMSNorm as one autograd function: the same numbers in fewer passes over memory, and under autocast its output
already in the compute dtype.

transformers' Llama-style RMSNorm (Llama, Mistral, Qwen, SmolLM2, ...) computes
    y = weight * (x * rsqrt(mean(x^2) + eps))
as five operators forward and about ten in the backward pass (the mean's expanded gradient, pow's, two
broadcast multiplies and the sum of the two paths into x). On a CPU each is a full pass over the activations,
at a size where matmuls are fast and memory is not: SmolLM2-135M has 61 norms a step. Here the forward is a
reduction and two multiplies, and the backward
    dx = rstd * (g * w) - x * rstd^3 * sum(g * w * x) / d,    dw = sum over rows of g * x * rstd
is five passes, the row sums as matrix-vector products. Under autocast the output is written in the compute
dtype: every consumer is a projection that autocast would cast it to anyway (the same rounding, once), and the
gradients that come back stay in that dtype, so the LoRA layers' casts of their input and of its gradient
disappear.

`fuse_rms_norms` swaps the forward of each module that computes exactly that function on a float32 input (a
1-D `weight`, an `eps` or `variance_epsilon`, checked on a probe input, not by class name: Gemma's `1 + weight`
norm fails the probe and keeps its own). A call with a non-float32 input (a model loaded in bf16) goes through
the module's own forward, whose rounding differs. tests/unit/test_rms_norm.py checks outputs and gradients
against transformers' own norm, frozen and trained weights, and a whole model's loss and gradients.
"""

from __future__ import annotations

import types
from typing import Any

import torch


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, weight, eps: float, out_dtype: torch.dtype):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        rstd = torch.rsqrt(x2.pow(2).mean(-1, keepdim=True).add_(eps))
        out = torch.empty(x2.shape, dtype=out_dtype, device=x.device)
        torch.mul(torch.mul(x2, rstd), weight, out=out)
        ctx.save_for_backward(x2, weight, rstd)
        ctx.shape = shape
        return out.view(shape)

    @staticmethod
    def backward(ctx: Any, grad):
        x2, weight, rstd = ctx.saved_tensors
        g = grad.reshape(-1, x2.shape[-1])
        gx = g * x2  # float32
        grad_weight = (gx.t() @ rstd).view(-1) if ctx.needs_input_grad[1] else None
        coefficient = (gx @ weight.view(-1, 1)).mul_(rstd.pow(3)).div_(-x2.shape[-1])
        grad_x = torch.mul(g, weight).mul_(rstd).addcmul_(x2, coefficient)
        return grad_x.view(ctx.shape), grad_weight, None, None


def _epsilon(module: torch.nn.Module) -> float | None:
    for name in ("variance_epsilon", "eps"):
        value = getattr(module, name, None)
        if isinstance(value, float):
            return value
    return None


def _fused_forward(self, hidden: torch.Tensor) -> torch.Tensor:
    weight = self.weight
    if (
        hidden.dtype != torch.float32
        or weight.dtype != torch.float32
        or type(weight.data) is not torch.Tensor
    ):
        return self._own_forward(hidden)
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    with torch.autocast(device, enabled=False):
        return _RMSNorm.apply(hidden, weight, self._rms_eps, dtype)


def computes_rms_norm(module: torch.nn.Module) -> bool:
    """True when `module` has no children, a 1-D float32 weight and an epsilon, and on a float32 probe input
    returns weight * x * rsqrt(mean(x^2) + eps)."""
    weight = getattr(module, "weight", None)
    eps = _epsilon(module)
    if (
        eps is None
        or any(True for _ in module.children())
        or not isinstance(weight, torch.nn.Parameter)
        or type(weight.data) is not torch.Tensor
        or weight.ndim != 1
        or weight.dtype != torch.float32
    ):
        return False
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(3, weight.shape[0], generator=generator).to(weight.device) * 3.0
    with torch.no_grad(), torch.autocast(weight.device.type, enabled=False):
        try:
            got = module(probe)
        except Exception:  # a norm with another signature is not this one
            return False
        expected = weight * (probe * torch.rsqrt(probe.pow(2).mean(-1, keepdim=True) + eps))
    return (
        got.shape == expected.shape
        and got.dtype == torch.float32
        and torch.allclose(got, expected, 1e-5, 1e-6)
    )


def fuse_rms_norms(model: torch.nn.Module) -> int:
    """Give every module that `computes_rms_norm` the fused forward; returns how many."""
    count = 0
    for module in model.modules():
        if not hasattr(module, "_own_forward") and computes_rms_norm(module):
            module._rms_eps = _epsilon(module)
            module._own_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count
