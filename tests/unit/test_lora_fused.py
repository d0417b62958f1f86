"""The fused LoRA layer computes what peft's layer computes, with the same gradients, dropout included."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.conftest import tiny_llama
from tunesmith.methods.lora_fused import _LoraLinear, fuse_lora_layers

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def peft_pair(dropout: float):
    """The same LoRA model twice (non-zero B so the update matters): peft's layers, and fused ones."""
    base = tiny_llama()
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS, init_lora_weights=False
    )
    reference = get_peft_model(copy.deepcopy(base), config)
    fused = get_peft_model(copy.deepcopy(base), config)
    fused.load_state_dict(reference.state_dict())
    assert fuse_lora_layers(fused) == 2 * len(TARGETS)
    return reference, fused


def loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_matches_peft_without_dropout():
    reference, fused = peft_pair(dropout=0.0)
    ids = torch.randint(0, 64, (3, 10))
    loss_ref, grads_ref = loss_and_grads(reference.train(), ids)
    loss_fused, grads_fused = loss_and_grads(fused.train(), ids)
    torch.testing.assert_close(loss_fused, loss_ref)
    assert grads_ref.keys() == grads_fused.keys() and len(grads_ref) == 4 * len(TARGETS)
    for name in grads_ref:
        torch.testing.assert_close(grads_fused[name], grads_ref[name], rtol=1e-4, atol=1e-6)


def test_eval_mode_has_no_dropout_and_matches_peft():
    reference, fused = peft_pair(dropout=0.3)
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(fused.eval()(ids).logits, reference.eval()(ids).logits)


def test_dropout_mask_is_bernoulli_per_layer_and_gradients_are_exact():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    a = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    p, scaling = 0.4, 1.5

    def fused(x, a, b):
        torch.manual_seed(7)  # the same mask on every call, so finite differences see one function
        return _LoraLinear.apply(x, weight, bias, a, b, scaling, p, torch.float64)

    torch.manual_seed(7)
    keep = torch.rand(10, 6) >= p
    dropped = x.reshape(10, 6) * keep / (1 - p)
    expected = x.reshape(10, 6) @ weight.T + bias + scaling * dropped @ a.T @ b.T
    torch.testing.assert_close(fused(x, a, b), expected.reshape(2, 5, 3))
    assert 0 < int((~keep).sum()) < keep.numel()
    assert torch.autograd.gradcheck(fused, (x, a, b))


def test_bf16_autocast_follows_peft_closely():
    reference, fused = peft_pair(dropout=0.0)
    ids = torch.randint(0, 64, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_ref, grads_ref = loss_and_grads(reference.train(), ids)
        loss_fused, grads_fused = loss_and_grads(fused.train(), ids)
    assert all(g.dtype == torch.float32 for g in grads_fused.values())
    torch.testing.assert_close(loss_fused, loss_ref, rtol=2e-2, atol=2e-2)
    for name in grads_ref:
        cosine = torch.nn.functional.cosine_similarity(
            grads_fused[name].flatten(), grads_ref[name].flatten(), 0
        )
        assert cosine > 0.99, name


@pytest.mark.parametrize("how", ["disabled", "merged"])
def test_peft_features_bypass_the_fused_path(how):
    reference, fused = peft_pair(dropout=0.0)
    ids = torch.randint(0, 64, (2, 6))
    with torch.no_grad():
        if how == "disabled":
            with fused.disable_adapter():
                got = fused.eval()(ids).logits
            want = tiny_llama().eval()(ids).logits  # the untouched base
        else:
            fused.merge_adapter()
            got = fused.eval()(ids).logits
            want = reference.eval()(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
