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
    assert (
        architecture_refusal(gemma, tmp_path / "tokenizer.model") is None
    )  # or the folder's SentencePiece file
    assert "GGUF file or from the tokenizer.model in its folder" in architecture_refusal(gemma, None)


def test_a_gemma3_that_llama_cpp_would_compute_differently_is_refused(tmp_path):
    source = tmp_path / "tokenizer.model"

    def refusal(**changes) -> str | None:
        return architecture_refusal(Gemma3TextConfig(architectures=["Gemma3ForCausalLM"], **changes), source)

    assert "full attention on every 6th layer" in refusal(layer_types=["full_attention"] * 26)
    assert "soft-capping" in refusal(final_logit_softcapping=30.0)
    assert "query_pre_attn_scalar" in refusal(query_pre_attn_scalar=128)
    scaled = {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}
    local = {"rope_type": "default", "rope_theta": 10000.0}
    assert "rope scaling" in refusal(rope_parameters={"full_attention": scaled, "sliding_attention": local})
    other_local = {"rope_type": "default", "rope_theta": 5e4}
    full = {"rope_type": "default", "rope_theta": 1e6}
    assert "local rope base" in refusal(
        rope_parameters={"full_attention": full, "sliding_attention": other_local}
    )


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
