"""A merged decoder model and its tokenizer written as one GGUF file (llama.cpp, Ollama, LM Studio), with the
`gguf` package's own tensor-name maps and quantizers.

What goes in: the architecture's hyperparameters; every weight under llama.cpp's tensor names (the query and
key projections re-ordered for llama.cpp's rotary layout, as its own converter does); the byte-level BPE
vocabulary with its merges, token types and pre-tokenizer (or a SentencePiece one with its scores: Gemma 3);
BOS/EOS/pad, the end-of-turn tokens the run stops at, and the chat template the run trained with; the run's
generation defaults. Norms and other 1-D tensors stay float32 (llama.cpp wants them so); matrices are f16 or
f32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tunesmith.errors import UserError

Quant = Literal["f32", "f16"]
WRITTEN_QUANTS: tuple[Quant, ...] = ("f32", "f16")
"""Written here from the float weights. Quantized files (q8_0, K-quants) are made from the f16 file by
llama.cpp's own quantizer, as its users do: on a SmolLM2 LoRA run, gguf's Python q8_0 ranked first 94.7% of the
run's answer tokens and llama.cpp's q8_0 from f16 96.8%."""

ARCHITECTURES = {"LlamaForCausalLM": "LLAMA", "Gemma3ForCausalLM": "GEMMA3"}
"""transformers class -> gguf.MODEL_ARCH member. Llama covers SmolLM2 (and Llama 2/3, Mistral-style dense
models); Gemma 3 the text model (the packaged gemma3-270m, or a Gemma 3 base in a folder). Anything else is
refused before any weight is read."""
FROM_SOURCE = {"GEMMA3"}
"""Architectures with a SentencePiece vocabulary: llama.cpp merges its pieces by their scores, which
transformers' tokenizer does not keep (it rebuilt merges from the pieces' order), so the vocabulary comes from
the base model's own GGUF (with its hyperparameter keys, as its converter wrote them) or, for a base in a
folder, from its SentencePiece model file (SPM_FILE), read as llama.cpp's converter reads it."""
SPM_FILE = "tokenizer.model"
GEMMA3_FULL_EVERY = 6
"""llama.cpp's gemma3 gives every 6th layer full attention and the others the sliding window; its local rope
base is GEMMA3_LOCAL_ROPE. A Gemma 3 whose config says otherwise is refused (llama.cpp would compute another
model)."""
GEMMA3_LOCAL_ROPE = 10000.0

PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
}
"""How llama.cpp names a byte-level BPE pre-tokenizer: the sha256 of the token ids of its check text (copied
with the text from llama.cpp's convert_hf_to_gguf.py, for the families supported here). An unknown one is
refused: llama.cpp would split words differently from the run."""
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)


@dataclass
class Generation:
    """The run's generation defaults, written as GGUF sampling keys (llama.cpp reads them as its defaults)."""

    temperature: float
    """0 for greedy decoding (do_sample false)."""
    top_p: float
    repeat_penalty: float


def architecture_refusal(config: Any, source: Path | None) -> str | None:
    """Why this model cannot be written to GGUF here, from its config (and whether its base shipped as GGUF)."""
    names = list(getattr(config, "architectures", None) or [])
    if not any(name in ARCHITECTURES for name in names):
        return (
            f"GGUF export supports the {', '.join(sorted(ARCHITECTURES))} architectures; this run's model is "
            f"{', '.join(names) or getattr(config, 'model_type', 'unknown')}"
        )
    if ARCHITECTURES[names[0]] in FROM_SOURCE:
        if source is None:
            return (
                f"GGUF export of {names[0]} takes the SentencePiece vocabulary (the token scores llama.cpp "
                f"merges by) from the base model's own GGUF file or from the {SPM_FILE} in its folder, and this "
                f"run's base has neither; use --format merged"
            )
        if source.suffix != ".gguf" and not all(map(_importable, ("sentencepiece", "google.protobuf"))):
            return (
                f"GGUF export reads the base's {SPM_FILE} with the sentencepiece and protobuf packages: "
                "pip install 'tunesmith[gguf]'"
            )
        return _gemma3_refusal(config)
    scaling = getattr(config, "rope_parameters", None) or {}
    if scaling.get("rope_type", "default") != "default":
        return f"GGUF export does not write rope scaling {scaling.get('rope_type')!r} yet"
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _gemma3_refusal(config: Any) -> str | None:
    """Why llama.cpp's gemma3 would compute another model than this config describes (None: it would not)."""
    layers = list(getattr(config, "layer_types", None) or [])
    pattern = [
        "full_attention" if (i + 1) % GEMMA3_FULL_EVERY == 0 else "sliding_attention"
        for i in range(config.num_hidden_layers)
    ]
    if layers and layers != pattern:
        return (
            f"GGUF export of Gemma 3 needs full attention on every {GEMMA3_FULL_EVERY}th layer (llama.cpp's)"
        )
    rope = getattr(config, "rope_parameters", None) or {}
    kinds = {
        rope.get(kind, {}).get("rope_type", "default") for kind in ("full_attention", "sliding_attention")
    }
    if kinds != {"default"}:
        return "GGUF export does not write Gemma 3's rope scaling yet; use --format merged"
    if float(rope.get("sliding_attention", {}).get("rope_theta", GEMMA3_LOCAL_ROPE)) != GEMMA3_LOCAL_ROPE:
        return f"GGUF export of Gemma 3 needs a local rope base of {GEMMA3_LOCAL_ROPE:g} (llama.cpp's)"
    if getattr(config, "query_pre_attn_scalar", config.head_dim) != config.head_dim:
        return "GGUF export of Gemma 3 needs query_pre_attn_scalar equal to head_dim (llama.cpp's attention scale)"
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "attn_logit_softcapping", None):
        return "GGUF export of Gemma 3 does not write logit soft-capping (llama.cpp's gemma3 has none)"
    return None


def pre_tokenizer(tokenizer: Any) -> str:
    ids = tokenizer.encode(CHECK_TEXT)
    digest = hashlib.sha256(str(ids).encode()).hexdigest()
    name = PRE_TOKENIZERS.get(digest)
    if name is None:
        raise UserError(
            "GGUF export: the tokenizer's pre-tokenizer is not one llama.cpp is known to reproduce here "
            f"(supported: {', '.join(sorted(set(PRE_TOKENIZERS.values())))}); use --format merged"
        )
    return name


def write_gguf(
    model: torch.nn.Module,
    tokenizer: Any,
    path: Path,
    quant: Quant,
    stop_ids: list[int],
    generation: Generation,
    name: str,
    source: Path | None = None,
) -> None:
    """`source`: for the architectures in FROM_SOURCE, the base model's own GGUF or its SPM_FILE."""
    import gguf

    config = model.config
    family = ARCHITECTURES[config.architectures[0]]
    arch = getattr(gguf.MODEL_ARCH, family)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}[quant]
    if family in FROM_SOURCE:
        assert source is not None, "architecture_refusal refuses a FROM_SOURCE model without its vocabulary"
        writer.add_name(name)
        writer.add_file_type(file_type)
        if source.suffix == ".gguf":
            _copy_keys(writer, source, (f"{gguf.MODEL_ARCH_NAMES[arch]}.", "tokenizer.ggml."))
            writer.add_chat_template(tokenizer.chat_template)
        else:
            _gemma3_hyperparameters(writer, config)
            _sentencepiece_vocabulary(writer, tokenizer, source, config.vocab_size)
        _end_of_turn(writer, tokenizer, stop_ids)
    else:
        _hyperparameters(writer, config, name, file_type)
        _vocabulary(writer, tokenizer, config.vocab_size, stop_ids)
    writer.add_sampling_temp(generation.temperature)
    writer.add_sampling_top_p(generation.top_p)
    writer.add_sampling_penalty_repeat(generation.repeat_penalty)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    for hf_name, tensor in _tensors(model, rotary=family == "LLAMA", norm_shift=family == "GEMMA3"):
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(
                f"GGUF export: llama.cpp's {gguf.MODEL_ARCH_NAMES[arch]} architecture has no tensor for "
                f"{hf_name}; this model is not a plain one of that architecture: use --format merged"
            )
        data, kind = _encode(tensor, quant, gguf)
        writer.add_tensor(gguf_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _hyperparameters(writer: Any, config: Any, name: str, file_type: Any) -> None:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)


def _vocabulary(writer: Any, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
    """The byte-level BPE vocabulary as llama.cpp's converter writes it (get_vocab_base), plus the special
    tokens, merges and chat template read back from the tokenizer's own saved files."""
    import gguf

    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = by_id[i]
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(Path(folder), load_merges=True)
        special.add_to_gguf(writer)
    _end_of_turn(writer, tokenizer, stop_ids)


def _gemma3_hyperparameters(writer: Any, config: Any) -> None:
    """The gemma3.* keys llama.cpp reads, from the transformers config (what its converter writes)."""
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_freq_base(float(rope.get("full_attention", {}).get("rope_theta", 1_000_000.0)))
    writer.add_sliding_window(config.sliding_window)


def _sentencepiece_vocabulary(writer: Any, tokenizer: Any, model_file: Path, vocab_size: int) -> None:
    """A SentencePiece vocabulary as llama.cpp's converter writes it: each piece of the model file with its
    score and kind (the file's numbering of kinds is GGUF's); the tokenizer's added tokens over them as control
    tokens (special ones, and those that look special) or user-defined ones, scored -1000; ids past the file's
    pieces unused. The special token ids, add-BOS/EOS flags and chat template are the run's tokenizer's. The
    file is a protocol buffer, parsed as data (nothing in it runs)."""
    import gguf
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores, types = [-10000.0] * vocab_size, [int(gguf.TokenType.UNUSED)] * vocab_size
    for i, piece in enumerate(proto.pieces[:vocab_size]):
        tokens[i], scores[i], types[i] = piece.piece.encode(), piece.score, int(piece.type)
    for i, added in tokenizer.added_tokens_decoder.items():
        if i >= vocab_size:
            continue
        if added.special or _looks_special(added.content):
            tokens[i], types[i] = added.content.encode(), int(gguf.TokenType.CONTROL)
        else:
            tokens[i], types[i] = (
                added.content.replace("\u2581", " ").encode(),
                int(gguf.TokenType.USER_DEFINED),
            )
        scores[i] = -1000.0
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    # Gemma 3 puts no space before the text (llama.cpp's converter writes the same)
    writer.add_add_space_prefix(False)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(Path(folder), n_vocab=vocab_size)  # and the chat template
    # no EOS appended, as llama.cpp assumes for SentencePiece when the key is missing: said outright
    special.add_special_token.setdefault("eos", False)
    special.add_to_gguf(writer)


def _looks_special(text: str) -> bool:
    """Added tokens llama.cpp's converter treats as control tokens even when not marked special."""
    return (
        text in ("<pad>", "<mask>")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


def _end_of_turn(writer: Any, tokenizer: Any, stop_ids: list[int]) -> None:
    end_of_turn = [i for i in stop_ids if i != tokenizer.eos_token_id]
    if end_of_turn:
        writer.add_eot_token_id(end_of_turn[0])


def _copy_keys(writer: Any, source: Path, prefixes: tuple[str, ...]) -> None:
    """The source GGUF's keys under `prefixes`, with their types, as its converter wrote them."""
    import gguf

    reader = gguf.GGUFReader(source)
    for key, field in reader.fields.items():
        if not key.startswith(prefixes):
            continue
        kind = gguf.GGUFValueType(field.types[0])
        sub = gguf.GGUFValueType(field.types[-1]) if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), kind, sub)


def _tensors(model: torch.nn.Module, rotary: bool, norm_shift: bool) -> list[tuple[str, torch.Tensor]]:
    """The weights by transformers name; `rotary`: q/k re-ordered for llama.cpp's rotary layout (Llama);
    `norm_shift`: RMSNorm weights + 1 (Gemma's norms scale by 1 + weight, llama.cpp's by the weight). A tied
    output matrix is left out (llama.cpp reuses the embedding, as the model does)."""
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        tensor = tensor.detach().float().cpu()
        if rotary and name.endswith("q_proj.weight"):
            tensor = _rotary_order(tensor, heads)
        elif rotary and name.endswith("k_proj.weight"):
            tensor = _rotary_order(tensor, kv_heads)
        elif norm_shift and name.endswith("norm.weight"):
            tensor = tensor + 1
        out.append((name, tensor))
    return out


def _rotary_order(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers rotates each head's two halves; llama.cpp rotates interleaved pairs: the same rows in
    another order (llama.cpp's LlamaModel.permute)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _encode(tensor: torch.Tensor, quant: Quant, gguf: Any) -> tuple[np.ndarray, Any]:
    kinds = gguf.GGMLQuantizationType
    data = tensor.numpy()
    if data.ndim <= 1 or quant == "f32":
        return data.astype(np.float32), kinds.F32
    return data.astype(np.float16), kinds.F16
