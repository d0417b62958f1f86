"""Causal attention over one packed row, one example at a time: no dense mask and no padding.

With SDPA, a packed row (data/packing.py) gets a dense block-diagonal mask over the whole row, and the CPU's
flash kernel then computes every query against every key of the row and cannot skip the masked blocks: on
the chat LoRA benchmark (rows of 256 holding about three chats each) that is five times the useful work, and
SDPA's backward on a CPU is slow besides (19% of a bf16 step, bench/profile_step.py). Here each example of
the row, a segment given by `cu_seq_lens_q` (transformers' name for the cumulative lengths of packed
sequences), gets its own causal attention:
- up to `EAGER_UP_TO` tokens, when gradients are wanted, as transformers' eager attention computes it (scores
  in the compute dtype, softmax in float32, the probabilities back in the compute dtype); for short
  sequences its forward and backward together take half the time of SDPA's flash kernel on a CPU;
- longer, or without gradients, through SDPA's kernel with `is_causal` (a sliding window as an explicit mask).
A whole batch can then be one row: `collate_packed(..., one_row=True)` lays every example end to end with no
padding at all.

The model keeps its SDPA for everything else: `use_segment_attention` registers this function under `NAME`
with transformers' AttentionInterface and SDPA's mask function under the same name, and switches the model to
it; a call without `cu_seq_lens_q` (generation with a cache, padded batches, a 4D mask of its own) goes to
transformers' SDPA function with SDPA's mask, unchanged. The name is not saved with the model (transformers
does not write the attention implementation into config.json). Only for CPUs: on a GPU the dense mask goes to
kernels this was not measured against. tests/unit/test_segment_attention.py checks logits and gradients
against SDPA with the dense mask on the real SmolLM2, sliding window and gradient checkpointing included.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.data.packing import SEGMENT_ATTENTION as NAME

EAGER_UP_TO = 256
"""Longest segment computed as eager attention when gradients are wanted; longer ones go through SDPA's
kernel. Measured on a 2-core AVX512-BF16 CPU, SmolLM2-135M's heads (9 query heads, 3 key-value heads of 64),
bf16, forward and backward of one segment: 48 tokens 0.52 ms eager vs 1.19 SDPA; 100: 0.82 vs 2.18; 200: 2.43
vs 3.94; 300: 6.47 vs 7.17; 384: 10.7 vs 10.4; 512: 23.9 vs 17.7. Eager also keeps the L x L probabilities
(float32 and bf16) for the backward pass, which SDPA's kernel does not, so the bound stays where the gain is
clear."""


def segment_attention_supported(model: torch.nn.Module) -> bool:
    """True for a causal LM on the CPU whose attention is SDPA through transformers' AttentionInterface (its
    config has no sub-configs: one attention implementation for the whole model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or config.is_encoder_decoder or getattr(config, "sub_configs", None):
        return False
    if config._attn_implementation not in ("sdpa", NAME):
        return False
    if not getattr(base, "_supports_attention_backend", False):
        return False
    return all(p.device.type == "cpu" for p in base.parameters())


def use_segment_attention(model: torch.nn.Module) -> None:
    """Switch the model (SDPA, `segment_attention_supported`) to segment attention for packed rows."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, segment_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config._attn_implementation = NAME


def segment_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention function: query (1, heads, tokens, dim), key and value (1, kv heads, tokens,
    dim) of one packed row whose segments `kwargs["cu_seq_lens_q"]` gives; returns (1, tokens, heads, dim).
    Without `cu_seq_lens_q`: transformers' SDPA function."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        raise ValueError("segment attention takes one packed row and no cache")
    if torch.is_autocast_enabled(query.device.type):  # as SDPA under autocast computes
        dtype = torch.get_autocast_dtype(query.device.type)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    window = sliding_window or None
    ends = bounds.tolist()
    sizes = [end - start for start, end in zip(ends, ends[1:], strict=False)]
    # split along the tokens (one backward node that concatenates the gradients): indexing each segment apart
    # costs a zero-filled gradient of the whole row per segment in the backward pass
    segments = zip(*(t[0].transpose(0, 1).split(sizes) for t in (query, key, value)), strict=True)
    outputs = []
    for q, k, v in segments:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        if q.shape[1] <= EAGER_UP_TO and torch.is_grad_enabled():
            out = _eager(q, k, v, scale, dropout, window)
        else:
            out = _sdpa(q, k, v, scale, dropout, window)
        outputs.append(out.transpose(0, 1))
    return torch.cat(outputs).unsqueeze(0), None


def _hidden(length: int, window: int | None, device: torch.device) -> torch.Tensor:
    """(length, length): True where a query may not see a key (a later key, or one `window` or more back)."""
    hidden = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    if window is not None and length > window:
        hidden |= torch.ones_like(hidden).tril(-window)
    return hidden


@lru_cache(maxsize=16)
def _hidden_bias(
    length: int, groups: int, window: int | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(groups * length, length): -inf where a query may not see a key, else 0, once per query head of a
    key-value head (eager scores are laid out so). Kept for the few lengths of the last calls: every layer of
    a step asks again for the same lengths. At most EAGER_UP_TO tokens; never written to."""
    bias = torch.zeros(length, length, dtype=dtype, device=device)
    bias.masked_fill_(_hidden(length, window, device), float("-inf"))
    return bias.repeat(groups, 1)


def _eager(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout: float, window: int | None
) -> torch.Tensor:
    """One segment's causal attention as transformers' eager attention: (heads, length, dim) queries, (kv
    heads, length, dim) keys and values; each key-value head serves `heads / kv heads` query heads in a row.
    The scale and the mask go into the score matmul (baddbmm: the same numbers as a matmul, a multiply and a
    masked fill, and the backward pass skips both)."""
    heads, length, dim = q.shape
    kv_heads = k.shape[0]
    groups = heads // kv_heads
    scores = torch.baddbmm(
        _hidden_bias(length, groups, window, q.dtype, q.device),
        q.reshape(kv_heads, groups * length, dim),
        k.transpose(1, 2),
        alpha=scale,
    )
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    if dropout > 0:
        probs = F.dropout(probs, p=dropout, training=True)
    return torch.bmm(probs, v).view(heads, length, dim)


def _sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout: float, window: int | None
) -> torch.Tensor:
    """One segment's causal attention through SDPA's kernel (shapes as `_eager`)."""
    length = q.shape[1]
    mask = None if window is None or length <= window else ~_hidden(length, window, q.device)
    out = F.scaled_dot_product_attention(
        q.unsqueeze(0),
        k.unsqueeze(0),
        v.unsqueeze(0),
        attn_mask=mask,
        dropout_p=dropout,
        is_causal=mask is None,
        scale=scale,
        enable_gqa=q.shape[0] != k.shape[0],
    )
    return out[0]
