"""What the GGUF writer refuses, decided on real transformers configs before any weight is read, and its
rotary re-ordering, checked against transformers' own inverse (the GGUF loader's)."""

from __future__ import annotations

import torch
from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

from tunesmith.export.gguf_writer import _rotary_order, architecture_refusal


def test_llama_and_gemma3_are_written_and_others_are_refused_with_the_supported_list(tmp_path):
    assert architecture_refusal(LlamaConfig(architectures=["LlamaForCausalLM"]), None) is None
    said = architecture_refusal(GPT2Config(architectures=["GPT2LMHeadModel"]), None)
    assert said == (
        "GGUF export supports the Gemma3ForCausalLM, LlamaForCausalLM architectures; this run's model is "
        "GPT2LMHeadModel"
    )
    gemma = Gemma3TextConfig(architectures=["Gemma3ForCausalLM"])
    assert architecture_refusal(gemma, tmp_path / "base.gguf") is None  # the base's own GGUF gives the vocab
    assert "bases that ship as GGUF (gemma3-270m); use --format merged" in architecture_refusal(gemma, None)


def test_rope_scaling_the_writer_does_not_carry_is_refused():
    config = LlamaConfig(
        architectures=["LlamaForCausalLM"],
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    )
    assert architecture_refusal(config, None) == "GGUF export does not write rope scaling 'linear' yet"


def test_the_rotary_order_is_undone_by_the_transformers_gguf_loader():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weight = torch.randn(3 * 64, 576)  # 3 heads of 64, as SmolLM2's key projection
    ordered = _rotary_order(weight, 3)
    assert not torch.equal(ordered, weight)
    processor = LlamaTensorProcessor({"num_attention_heads": 9, "num_key_value_heads": 3})
    back = processor.process(ordered.numpy(), "blk.0.attn_k.weight").weights
    assert torch.equal(torch.from_numpy(back), weight)
