"""The fused LoRA layer computes what peft's layer computes, with the same gradients, dropout included."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.conftest import tiny_llama
from tunesmith.methods.lora_fused import _LoraLinear, fuse_lora_layers, keep_mask

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


def test_dropout_mask_gradients_are_exact():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    a = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    scaling = 1.5
    keep, p = keep_mask((10, 6), 0.4, x.device)
    assert 0 < int((~keep).sum()) < keep.numel()

    def fused(x, a, b):
        x2 = x.reshape(10, 6)
        return _LoraLinear.apply(x, x2, torch.where(keep, x2, 0.0), weight, bias, a, b, scaling, keep, p)

    dropped = x.reshape(10, 6) * keep / (1 - p)
    expected = x.reshape(10, 6) @ weight.T + bias + scaling * dropped @ a.T @ b.T
    torch.testing.assert_close(fused(x, a, b), expected.reshape(2, 5, 3))
    assert torch.autograd.gradcheck(fused, (x, a, b))


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_keep_mask_drops_with_probability_p(p):
    torch.manual_seed(0)
    keep, drop = keep_mask((1000, 999), p, torch.device("cpu"))  # an odd count: the last word partly used
    assert keep.shape == (1000, 999) and keep.dtype == torch.bool
    assert abs(drop - p) <= 1 / 65536
    dropped = (~keep).float()
    # 999,000 draws: the standard error of the rate is below 5e-4; rows and columns are alike
    assert abs(dropped.mean().item() - drop) < 2e-3
    assert dropped.mean(0).std().item() < 0.05 and dropped.mean(1).std().item() < 0.05
    again, _ = keep_mask((1000, 999), p, torch.device("cpu"))
    assert not torch.equal(keep, again)


def test_layers_reading_one_input_share_its_mask_and_others_do_not():
    _, fused = peft_pair(dropout=0.5)
    masks = {}
    for name, module in fused.named_modules():
        if hasattr(module, "_peft_forward"):
            module.register_forward_hook(
                lambda m, args, out, name=name: masks.__setitem__(name, m._shared_input.keep.clone())
            )
    fused.train()(torch.randint(0, 64, (2, 6)))
    layer = "base_model.model.model.layers.0."
    q, k, v, o = (masks[layer + f"self_attn.{n}_proj"] for n in "qkvo")
    gate, up, down = (masks[layer + f"mlp.{n}_proj"] for n in ("gate", "up", "down"))
    assert torch.equal(q, k) and torch.equal(q, v) and torch.equal(gate, up)
    assert not torch.equal(gate, q[:, : gate.shape[1]]) and down.shape != gate.shape
    assert not torch.equal(masks["base_model.model.model.layers.1.self_attn.q_proj"], q)


def test_under_autocast_the_base_weight_is_cast_once_and_dropped_in_full_precision():
    _, fused = peft_pair(dropout=0.0)
    ids = torch.randint(0, 64, (2, 6))
    q = fused.base_model.model.model.layers[0].self_attn.q_proj
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused.train()(ids)
        copy_1 = q.base_layer._compute_copy[1]
        fused(ids)
        assert q.base_layer._compute_copy[1] is copy_1 and copy_1.dtype == torch.bfloat16
        with torch.no_grad():
            q.base_layer.weight.mul_(2)  # a changed weight is cast again
        fused(ids)
        torch.testing.assert_close(q.base_layer._compute_copy[1], (q.base_layer.weight).bfloat16())
    fused(ids)
    assert q.base_layer._compute_copy is None


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
