"""What kind of model a name points at (encoder, causal or seq2seq), read from its config without weights.

Tasks declare the kinds they can fine-tune; knowing the kind before any weights load lets a wrong pairing fail
in a second, and lets a task with two variants (extractive QA on an encoder, generative QA on a decoder) pick
its variant.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.models.catalog import CATALOG, ResolvedModel, resolve_model

KINDS = ("encoder", "causal", "seq2seq")


def kind_from_config(config: dict) -> str:
    """The kind from a config.json mapping: encoder-decoder, decoder-only (a *ForCausalLM architecture or a
    known decoder family), else an encoder."""
    if config.get("is_encoder_decoder"):
        return "seq2seq"
    architectures = config.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures):
        return "causal"
    if config.get("is_decoder") or config.get("model_type") in _DECODER_TYPES:
        return "causal"
    return "encoder"


_DECODER_TYPES = {
    "llama",
    "gpt2",
    "gpt_neox",
    "gptj",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi",
    "phi3",
    "opt",
    "falcon",
    "bloom",
    "smollm3",
    "olmo",
    "olmo2",
}


def model_kind(resolved: ResolvedModel) -> str | None:
    """The kind of a resolved model, or None when it cannot be told without downloading (a hub id)."""
    if resolved.catalog is not None:
        return resolved.catalog.kind
    config_file = Path(resolved.source) / "config.json"
    if resolved.is_local and config_file.is_file():
        try:
            return kind_from_config(json.loads(config_file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None
    return None


def kind_of(name: str) -> str | None:
    """The kind of a model given by catalog name, folder or hub id, without loading (or converting) it."""
    entry = CATALOG.get(name)
    if entry is not None:
        return entry.kind
    return model_kind(resolve_model(name))
