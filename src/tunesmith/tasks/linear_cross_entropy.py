"""Cross-entropy through a frozen vocabulary projection, without the float32 logits.

`F.cross_entropy(head(hidden).float(), targets)` under bf16 autocast writes the (rows x vocabulary) logits three
more times in float32 (the cast, log-softmax's output, and in the backward pass the gradient, then its bf16
cast), each the size of the largest activation of a small LM: 59 MB for 300 answer tokens of SmolLM2's 49,152
words. Here one autograd function keeps the logits in the compute dtype and works through them a few rows at a
time, so each float32 chunk stays in the CPU's cache:
    forward:  logits = hidden @ W.T + b;  loss = sum over rows of logsumexp(logits) - logits[target]
    backward: d logits = softmax(logits) - onehot(target), computed in float32 from the saved log-sum-exps and
              rounded once; d hidden = d logits @ W
The same numbers as the float32 path, up to the order of float32 sums. Measured on a 2-core AVX512-BF16 CPU,
300 rows x 49,152, bf16, forward and backward: 188 ms median through F.cross_entropy, 118 ms here
(/tmp harness; bench/profile_step.py shows the step). tests/unit/test_linear_cross_entropy.py checks loss and
gradients against F.cross_entropy.

Only for a plain frozen nn.Linear (the head under LoRA and the other adapter methods); a trained or wrapped
head goes through F.cross_entropy as before.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.models.compute_copy import weights_in

CHUNK_BYTES = 4 * 2**20
"""float32 bytes of logits handled at once: on the CPU above, 0.5 to 8 MB chunks all took 113-133 ms for the
case in the module's docstring (flat); 4 MB keeps a chunk at one row only for vocabularies over a million."""


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden, weight, bias, targets):
        """`hidden` (rows, features) in any dtype; `weight` and `bias` in the compute dtype; `targets` (rows,)
        word ids (every row counts). Returns the summed loss, float32."""
        x = hidden.to(weight.dtype)
        logits = F.linear(x, weight, bias)
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        for rows in _chunks(logits):
            torch.logsumexp(logits[rows].float(), dim=-1, out=lse[rows])
        picked = logits.gather(1, targets[:, None]).squeeze(1).float()
        ctx.save_for_backward(weight, logits, lse, targets)
        ctx.hidden_dtype = hidden.dtype
        return (lse - picked).sum()

    @staticmethod
    def backward(ctx: Any, grad):
        weight, logits, lse, targets = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        rows_of = torch.arange(logits.shape[0], device=logits.device)
        for rows in _chunks(logits):
            probs = logits[rows].float().sub_(lse[rows, None]).exp_()
            probs[rows_of[rows] - rows.start, targets[rows]] -= 1.0
            grad_logits[rows].copy_(probs)
        grad_hidden = (grad_logits @ weight).mul_(grad.to(weight.dtype)).to(ctx.hidden_dtype)
        return grad_hidden, None, None, None


def _chunks(logits: torch.Tensor) -> list[slice]:
    step = max(1, CHUNK_BYTES // (4 * logits.shape[1]))
    return [slice(s, min(s + step, logits.shape[0])) for s in range(0, logits.shape[0], step)]


def summed_cross_entropy(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy of `head(hidden)` (rows, vocabulary) against `targets` (rows,), every row a
    target: fused as above for a plain frozen nn.Linear, F.cross_entropy on float32 logits otherwise."""
    device = hidden.device.type
    frozen = type(head) is torch.nn.Linear and not any(p.requires_grad for p in head.parameters())
    if not frozen:
        return F.cross_entropy(head(hidden).float(), targets, reduction="sum")
    autocast = torch.is_autocast_enabled(device)
    weight, bias = weights_in(head, torch.get_autocast_dtype(device) if autocast else head.weight.dtype)
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(hidden, weight, bias, targets)


def summed_token_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, int]:
    """The summed cross-entropy of (..., vocabulary) logits against (...) targets in float32, positions whose
    target is `ignore_index` left out, and how many positions count."""
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )
    return loss, int((targets != ignore_index).sum())
