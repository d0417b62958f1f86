"""Frozen linear weights in the compute dtype, cast once: under autocast, torch casts every weight a matmul
reads on every call, also one that never changes. For a frozen base under LoRA that is a full copy of every
weight on every step (the vocabulary projection of SmolLM2-135M alone, 57 MB in bf16, took 20 ms of a 2 s chat
LoRA step; bench/profile_step.py); here the copy is made once and kept while the weight is unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weights_in(linear: torch.nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`linear`'s weight and bias in `dtype`: a copy kept on the module (`_compute_copy`) while the weight and
    bias are unchanged (their version counters), or the weights themselves in their own dtype (the copy
    dropped). For frozen weights: a trained one changes every step and gets no gradient through the copy."""
    if dtype == linear.weight.dtype:
        linear._compute_copy = None
        return linear.weight, linear.bias
    bias = linear.bias
    key = (dtype, linear.weight._version, None if bias is None else bias._version)
    cached = getattr(linear, "_compute_copy", None)
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():  # a copy made in a validation serves training too
            cached = (key, linear.weight.to(dtype), None if bias is None else bias.to(dtype))
        linear._compute_copy = cached
    return cached[1], cached[2]


def frozen_linear(linear: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """linear(x), with a plain frozen nn.Linear's weights cast once under autocast (`weights_in`) instead of
    on every call; anything else is called as it is."""
    device = x.device.type
    frozen = type(linear) is torch.nn.Linear and not any(p.requires_grad for p in linear.parameters())
    if not frozen or not torch.is_autocast_enabled(device):
        return linear(x)
    dtype = torch.get_autocast_dtype(device)
    weight, bias = weights_in(linear, dtype)
    with torch.autocast(device, enabled=False):
        return F.linear(x.to(dtype), weight, bias)
