"""Rotary embeddings in the compute dtype under autocast (models/rotary_precision.py): cos and sin are bf16 under
autocast and float32 without it, and a model's logits stay as close to float32's as with float32 rotation."""

from __future__ import annotations

import torch

from tests.conftest import tiny_llama
from tunesmith.models.rotary_precision import rotary_in_compute_dtype


def test_cos_and_sin_come_in_the_autocast_dtype_only_under_autocast():
    model = tiny_llama()
    assert rotary_in_compute_dtype(model) == 1
    assert rotary_in_compute_dtype(model) == 0  # once
    rotary = model.model.rotary_emb
    hidden, positions = torch.randn(1, 5, 32), torch.arange(5)[None]
    plain = rotary(hidden, positions)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = rotary(hidden, positions)
    assert [t.dtype for t in plain] == [torch.float32] * 2
    assert [t.dtype for t in cast] == [torch.bfloat16] * 2
    for a, b in zip(cast, plain, strict=True):
        assert torch.equal(a, b.to(torch.bfloat16))


def test_logits_under_autocast_stay_as_close_to_float32_as_with_float32_rotation():
    model = tiny_llama(vocab_size=96, hidden_size=64, intermediate_size=96)
    ids = torch.randint(0, 96, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            before = model(input_ids=ids).logits.float()
        rotary_in_compute_dtype(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            after = model(input_ids=ids).logits.float()
        assert torch.equal(model(input_ids=ids).logits, reference)  # without autocast: unchanged
    error_before = (before - reference).norm() / reference.norm()
    error_after = (after - reference).norm() / reference.norm()
    assert not torch.equal(after, before)  # the rotation did run in bf16
    assert error_after <= 1.5 * error_before + 1e-3, (error_after, error_before)
