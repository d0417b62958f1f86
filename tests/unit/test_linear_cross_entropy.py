"""The fused head + cross-entropy (tasks/linear_cross_entropy.py) against F.cross_entropy on the logits: loss
and the hidden states' gradient in float32 and under bf16 autocast, over several chunks, and on a real LM's
answer tokens through the generative task's loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import tiny_llama
from tunesmith.tasks import linear_cross_entropy
from tunesmith.tasks.answer_logits import answer_logits, answer_loss
from tunesmith.tasks.linear_cross_entropy import summed_cross_entropy


def _head(vocab: int, features: int, bias: bool) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(features, vocab, bias=bias)
    head.requires_grad_(False)
    return head


def _reference(hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor):
    """Loss and d loss / d hidden in float64."""
    h = hidden.detach().double().requires_grad_()
    loss = F.cross_entropy(
        F.linear(h, head.weight.double(), None if head.bias is None else head.bias.double()),
        targets,
        reduction="sum",
    )
    loss.backward()
    return loss.detach(), h.grad


@pytest.mark.parametrize("bias", [False, True])
def test_float32_loss_and_gradient_equal_cross_entropy_over_uneven_chunks(monkeypatch, bias):
    monkeypatch.setattr(linear_cross_entropy, "CHUNK_BYTES", 4 * 1000 * 3)  # 3 rows of 1000 words a chunk
    head = _head(1000, 24, bias)
    hidden = torch.randn(11, 24, requires_grad=True)  # chunks of 3, 3, 3, 2
    targets = torch.randint(0, 1000, (11,))
    loss = summed_cross_entropy(hidden, head, targets)
    loss.backward()
    expected_loss, expected_grad = _reference(hidden, head, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), expected_loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(hidden.grad.double(), expected_grad, rtol=1e-4, atol=1e-6)
    # the gradient is scaled by the loss's own gradient
    hidden.grad = None
    (summed_cross_entropy(hidden, head, targets) * 0.25).backward()
    torch.testing.assert_close(hidden.grad.double(), 0.25 * expected_grad, rtol=1e-4, atol=1e-6)


def test_under_bf16_autocast_it_is_as_close_to_float64_as_the_float32_logits_path(monkeypatch):
    monkeypatch.setattr(linear_cross_entropy, "CHUNK_BYTES", 4 * 4096 * 7)
    head = _head(4096, 64, False)
    hidden = torch.randn(40, 64, requires_grad=True)
    targets = torch.randint(0, 4096, (40,))
    expected_loss, expected_grad = _reference(hidden, head, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = summed_cross_entropy(hidden, head, targets)
    fused.backward()
    fused_grad, hidden.grad = hidden.grad, None
    head.requires_grad_(True)  # a trained head takes F.cross_entropy on float32 logits: the old path
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = summed_cross_entropy(hidden, head, targets)
    plain.backward()
    assert head.weight.grad is not None
    assert fused.dtype == hidden.grad.dtype == fused_grad.dtype == torch.float32
    loss_error = (fused.double() - expected_loss).abs() / expected_loss
    plain_error = (plain.double() - expected_loss).abs() / expected_loss
    assert loss_error < 2e-3 and plain_error < 2e-3
    fused_error = (fused_grad.double() - expected_grad).norm() / expected_grad.norm()
    plain_error = (hidden.grad.double() - expected_grad).norm() / expected_grad.norm()
    assert fused_error <= 1.25 * plain_error + 1e-4, (fused_error, plain_error)
    assert fused_error < 2e-2


def test_the_generative_loss_of_a_lora_model_equals_cross_entropy_on_its_answer_logits():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(vocab_size=96), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    labels = torch.full((2, 12), -100)
    labels[0, 5:9] = torch.tensor([3, 17, 40, 2])
    labels[1, 8:12] = torch.tensor([90, 4, 4, 61])
    batch = {
        "input_ids": torch.randint(0, 96, (2, 12)),
        "attention_mask": torch.ones(2, 12),
        "labels": labels,
    }
    loss, count = answer_loss(model, batch)
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    logits, targets = answer_logits(model, batch)
    expected = F.cross_entropy(logits.float(), targets, reduction="sum")
    expected.backward()
    assert count == 8  # every supervised label but a first-position one
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(fused[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)
