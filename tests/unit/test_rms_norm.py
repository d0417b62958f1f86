"""The fused RMSNorm (models/rms_norm.py) against transformers' own: outputs and gradients, frozen and trained
weights, under bf16 autocast, and a whole Llama's loss and gradients; norms of another formula keep theirs."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_llama
from tunesmith.models.rms_norm import computes_rms_norm, fuse_rms_norms


def _norms(trained: bool):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    own = LlamaRMSNorm(48, eps=1e-5)
    with torch.no_grad():
        own.weight.uniform_(0.5, 1.5)
    own.weight.requires_grad_(trained)
    fused = LlamaRMSNorm(48, eps=1e-5)
    fused.load_state_dict(own.state_dict())
    fused.weight.requires_grad_(trained)
    assert fuse_rms_norms(fused) == 1
    return own, fused


@pytest.mark.parametrize("trained", [False, True])
def test_outputs_and_gradients_equal_transformers_rms_norm(trained):
    own, fused = _norms(trained)
    x = (torch.randn(2, 7, 48) * 4).requires_grad_()
    g = torch.randn(2, 7, 48)
    expected = own(x)
    expected.backward(g)
    expected_x, x.grad = x.grad, None
    got = fused(x)
    got.backward(g)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad, expected_x, rtol=1e-5, atol=1e-6)
    if trained:
        torch.testing.assert_close(fused.weight.grad, own.weight.grad, rtol=1e-5, atol=1e-5)
    else:
        assert fused.weight.grad is None


def test_under_bf16_autocast_the_output_is_the_float32_norm_rounded_once():
    own, fused = _norms(True)
    x = torch.randn(5, 48, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused(x)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, own(x).to(torch.bfloat16))
    g = torch.randn(5, 48).to(torch.bfloat16)
    got.backward(g)
    expected_x, expected_w = torch.autograd.grad(own(x), [x, own.weight], g.float())
    torch.testing.assert_close(x.grad, expected_x, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.weight.grad, expected_w, rtol=1e-5, atol=1e-5)
    # a bf16 input (a model loaded in bf16) goes through the module's own forward and rounding
    xb = torch.randn(5, 48).to(torch.bfloat16)
    assert torch.equal(fused(xb), own(xb))


def test_a_norm_of_another_formula_is_left_alone():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    gemma = GemmaRMSNorm(16)  # weight * (1 + w): a zero weight is not a zero output
    assert not computes_rms_norm(gemma)
    assert fuse_rms_norms(torch.nn.Sequential(gemma, torch.nn.LayerNorm(16), torch.nn.Linear(16, 16))) == 0


def test_a_whole_llama_trains_the_same_with_fused_norms():
    losses, grads = [], []
    for fuse in (False, True):
        model = tiny_llama(vocab_size=80)
        if fuse:
            assert fuse_rms_norms(model) == 5  # two a layer and the final one
        ids = torch.randint(0, 80, (2, 16), generator=torch.Generator().manual_seed(1))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-6)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fused_norms_of_a_loaded_model_survive_train_and_eval(tmp_path):
    """transformers would re-kernelize a model loaded with the Hub's kernels on (its default when the `kernels`
    package is installed) at every mode switch, putting the norms' own forward back: models/loader.py loads
    without them."""
    from transformers import AutoModelForCausalLM

    from tunesmith.models.catalog import resolve_model
    from tunesmith.models.loader import load_pretrained
    from tunesmith.sections import ModelConfig

    tiny_llama().save_pretrained(tmp_path)
    model = load_pretrained(
        AutoModelForCausalLM, resolve_model(str(tmp_path)), ModelConfig(name=str(tmp_path))
    )
    assert fuse_rms_norms(model) == 5
    model.train()
    model.eval()
    assert model.model.norm.forward.__func__.__name__ == "_fused_forward"
