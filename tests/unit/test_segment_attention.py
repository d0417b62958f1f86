"""Segment attention (models/segment_attention.py): a batch packed as one row, each example attending to itself
alone, gives the logits and gradients SDPA gives over rows with a dense block mask, and those of each example
run alone, on the real SmolLM2 (both of its paths: eager for short examples with gradients, SDPA's kernel for
long ones and without gradients); sliding windows and activation checkpointing included. Everything that is
not such a row still goes through SDPA, and the model saves as it was."""

import json

import pytest
import torch

from tests.conftest import tiny_llama, tiny_mistral
from tunesmith.data.packing import attention_implementation, collate_packed
from tunesmith.models.segment_attention import (
    EAGER_UP_TO,
    NAME,
    segment_attention_supported,
    use_segment_attention,
)


def feature(ids):
    return {"input_ids": list(ids), "labels": list(ids), "length": len(ids)}


def inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def per_example(logits, batch, examples):
    """The logits of each example, found in the packed rows by its tokens."""
    found = []
    for e in examples:
        for r in range(batch["input_ids"].shape[0]):
            row = batch["input_ids"][r].tolist()
            starts = (batch["position_ids"][r] == 0).nonzero().squeeze(-1).tolist()
            hit = next((s for s in starts if row[s : s + len(e)] == e), None)
            if hit is not None:
                found.append(logits[r, hit : hit + len(e)])
                break
    assert len(found) == len(examples)
    return found


@pytest.fixture(scope="module")
def smollm(smollm_dir):
    """A copy of SmolLM2 of this module's own (its attention is switched), in float32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm_dir, use_safetensors=True)
    assert model.config._attn_implementation == "sdpa"
    assert segment_attention_supported(model)
    use_segment_attention(model)
    assert model.config._attn_implementation == NAME
    assert attention_implementation(model) == "sdpa"  # what masks and the preference task's packing see
    return model


def gradients(model, batch, examples, weights):
    """Logits of each example and the gradients of a fixed weighting of them, in train mode."""
    model.zero_grad(set_to_none=True)
    logits = model(**inputs(batch), use_cache=False).logits
    found = per_example(logits, batch, examples)
    loss = sum((f * w).sum() for f, w in zip(found, weights, strict=True))
    loss.backward()
    layers = model.model.layers
    grads = [layers[0].self_attn.q_proj.weight.grad, layers[-1].mlp.down_proj.weight.grad]
    return [f.detach() for f in found], [g.clone() for g in grads]


@pytest.mark.slow
def test_one_row_equals_dense_rows_in_logits_and_gradients(smollm):
    torch.manual_seed(0)
    lengths = (7, 40, EAGER_UP_TO + 44, 12)  # one example over EAGER_UP_TO: SDPA's kernel under autograd
    examples = [torch.randint(10, 5000, (n,)).tolist() for n in lengths]
    weights = [torch.randn(n, smollm.config.vocab_size) / 100 for n in lengths]
    feats = [feature(e) for e in examples]
    one_row = collate_packed(feats, capacity=512, pad_id=0, one_row=True)
    rows = collate_packed(feats, capacity=512, pad_id=0)  # dense block mask, through SDPA
    assert one_row["input_ids"].shape == (1, sum(lengths)) and rows["input_ids"].shape[0] == 1
    smollm.train()  # SmolLM2 has no dropout: train mode changes nothing but the path taken
    ours, our_grads = gradients(smollm, one_row, examples, weights)
    theirs, their_grads = gradients(smollm, rows, examples, weights)
    for a, b in zip(ours, theirs, strict=True):
        # float32 sums in another order; attention leaking across examples moves logits by whole units
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
    for a, b in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    smollm.eval()
    with torch.inference_mode():  # no gradients: every segment through SDPA's kernel
        packed = smollm(**inputs(one_row), use_cache=False).logits
        alone = [smollm(input_ids=torch.tensor([e])).logits[0] for e in examples]
    for a, b in zip(per_example(packed, one_row, examples), alone, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_bf16_autocast_is_as_close_to_float32_as_sdpa(smollm):
    """Under bf16 autocast both paths compute in bf16: their logits are about as far from float32's as each
    other's (bf16 rounds differently in the two kernels; attention leaking across examples would move logits
    by whole units). Within 2x: on a CPU without bf16 instructions SDPA's kernel keeps more of its sums in
    float32 (AVX2 EPYC: 0.069 off against segment attention's 0.114; with AVX512-BF16 within 1.25x)."""
    torch.manual_seed(1)
    examples = [torch.randint(10, 5000, (n,)).tolist() for n in (30, 9, 51)]
    feats = [feature(e) for e in examples]
    one_row = collate_packed(feats, capacity=128, pad_id=0, one_row=True)
    rows = collate_packed(feats, capacity=128, pad_id=0)
    with torch.inference_mode():
        exact = per_example(smollm(**inputs(rows), use_cache=False).logits, rows, examples)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.enable_grad():
        ours = per_example(smollm(**inputs(one_row), use_cache=False).logits, one_row, examples)
        theirs = per_example(smollm(**inputs(rows), use_cache=False).logits, rows, examples)
    for a, b, x in zip(ours, theirs, exact, strict=True):
        assert a.dtype == b.dtype == torch.bfloat16
        ours_off, theirs_off = ((y.float() - x).abs().mean().item() for y in (a, b))
        assert ours_off < 2 * theirs_off + 0.01, (ours_off, theirs_off)


@pytest.mark.parametrize("grad", [True, False])
def test_sliding_window_as_each_example_alone(grad):
    model = tiny_mistral(window=6)
    reference = tiny_mistral(window=6)  # same weights, SDPA with transformers' own sliding mask
    use_segment_attention(model)
    examples = [[(7 * i + j) % 60 + 2 for i in range(n)] for j, n in enumerate((20, 3, 11))]
    batch = collate_packed([feature(e) for e in examples], capacity=64, pad_id=0, one_row=True)
    with torch.set_grad_enabled(grad):
        packed = model(**inputs(batch), use_cache=False).logits
        alone = [reference(input_ids=torch.tensor([e])).logits[0] for e in examples]
    for a, b in zip(per_example(packed, batch, examples), alone, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_activation_checkpointing_recomputes_the_same_attention():
    examples = [[(5 * i + j) % 60 + 2 for i in range(n)] for j, n in enumerate((9, 17, 4))]
    batch = collate_packed([feature(e) for e in examples], capacity=64, pad_id=0, one_row=True)
    grads = []
    for checkpointing in (False, True):
        model = tiny_llama()
        use_segment_attention(model)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(**inputs(batch), use_cache=False).logits.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_everything_else_is_sdpa_and_the_model_saves_as_it_was(tmp_path):
    model, reference = tiny_llama(), tiny_llama()
    use_segment_attention(model)
    prompt = torch.tensor([[5, 9, 13, 2, 40], [0, 0, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # left padding: a mask, no segments
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode():
        ours = model.generate(input_ids=prompt, attention_mask=mask, **settings)
        theirs = reference.generate(input_ids=prompt, attention_mask=mask, **settings)
    assert torch.equal(ours, theirs)
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()
    assert "tunesmith" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
