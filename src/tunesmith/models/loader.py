"""Load tokenizers and weights: safetensors only, no remote code unless asked, no silent downloads."""

from __future__ import annotations

from typing import Any

from tunesmith.errors import UserError
from tunesmith.models.catalog import CATALOG, ResolvedModel
from tunesmith.sections import ModelConfig


def _offline_kwargs(model: ResolvedModel, cfg: ModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if not model.is_local and not cfg.allow_download:
        kwargs["local_files_only"] = True
    return kwargs


def _not_found(model: ResolvedModel, cfg: ModelConfig, exc: Exception) -> UserError:
    if model.is_local:
        return UserError(f"cannot load the model in {model.source}: {exc}")
    names = ", ".join(CATALOG)
    if cfg.allow_download:
        why = "the download failed (is this machine offline?)"
    else:
        why = "it is not in the local Hugging Face cache and downloads are off (model.allow_download=false)"
    return UserError(
        f"model {model.source!r} is not a catalog name ({names}) nor a local folder, and {why}. "
        f"Give a local folder instead: --model /path/to/model (a folder with config.json and "
        f"*.safetensors), or allow the download with model.allow_download=true on a connected machine."
    )


def load_tokenizer(model: ResolvedModel, cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model.source, **_offline_kwargs(model, cfg))
    except (OSError, ValueError) as exc:
        raise _not_found(model, cfg, exc) from None


ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
"""Config keys that hold the dropout on attention probabilities, by family (BERT and its kin; Llama, Qwen,
DistilBERT, ModernBERT; GPT-2)."""


def config_overrides(model: ResolvedModel, cfg: ModelConfig) -> dict[str, Any]:
    """Model-config values the run sets over config.json: model.attention_dropout, under whichever key the
    model's config has (none where it has none of them, as T5's single `dropout_rate`)."""
    if cfg.attention_dropout is None or cfg.attention_dropout == "model":
        return {}
    config = load_model_config(model, cfg)
    return {key: cfg.attention_dropout for key in ATTENTION_DROPOUT_KEYS if hasattr(config, key)}


def load_pretrained(auto_class: Any, model: ResolvedModel, cfg: ModelConfig, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` with safetensors weights only (never a pickle), the model's config
    overridden as the run says (`config_overrides`)."""
    overrides = config_overrides(model, cfg)
    try:
        return auto_class.from_pretrained(
            model.source, use_safetensors=True, **_offline_kwargs(model, cfg), **overrides, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise _not_found(model, cfg, exc) from None


def load_model_config(model: ResolvedModel, cfg: ModelConfig) -> Any:
    """The model's transformers config (config.json), without its weights."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model.source, **_offline_kwargs(model, cfg))
    except (OSError, ValueError) as exc:
        raise _not_found(model, cfg, exc) from None
