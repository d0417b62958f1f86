"""How a sentence encoder turns its last hidden states into one vector: the pooling it was trained with.

A sentence-transformers folder says so itself: `modules.json` lists the pipeline (Transformer, Pooling,
optionally Normalize) and the Pooling module's `config.json` names the mode. An embedding run pools the way
the model was trained (all-MiniLM-L6-v2: mean, then unit length); a folder without those files (a plain
transformers encoder) gets the mean, the common choice for encoders never trained as sentence encoders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from tunesmith.errors import UserError
from tunesmith.models.pooled import mean_pool

PoolingMode = Literal["mean", "cls", "max", "lasttoken"]
POOLING_MODES: tuple[str, ...] = ("mean", "cls", "max", "lasttoken")

_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
}
"""sentence-transformers' Pooling config keys, by the mode each switches on."""

_PIPELINE = {"Transformer", "Pooling", "Normalize"}
"""The sentence-transformers modules an embedding run reproduces; a folder with others (Dense, ...) is refused."""


@dataclass(frozen=True)
class SentencePooling:
    mode: PoolingMode
    normalize: bool
    """Vectors scaled to unit length (a Normalize module), so a dot product is their cosine."""
    source: str
    """Where this was read: a folder's modules.json, or `default`."""


DEFAULT = SentencePooling("mean", False, "default")


def read_pooling(folder: Path) -> SentencePooling:
    """The pooling a sentence-transformers folder declares, or DEFAULT for a folder without modules.json."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return DEFAULT
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    unknown = sorted(set(kinds) - _PIPELINE)
    if unknown:
        raise UserError(
            f"{modules_file}: the model's sentence-transformers pipeline has {', '.join(unknown)}, which an "
            "embedding run does not reproduce (it takes Transformer, Pooling and Normalize)"
        )
    if "Pooling" not in kinds:
        return SentencePooling("mean", "Normalize" in kinds, str(modules_file))
    config = json.loads((folder / kinds["Pooling"]["path"] / "config.json").read_text(encoding="utf-8"))
    modes = [mode for key, mode in _FLAGS.items() if config.get(key)]
    if "pooling_mode" in config:  # newer sentence-transformers write the mode by name
        modes = [config["pooling_mode"]]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise UserError(
            f"{folder / kinds['Pooling']['path'] / 'config.json'}: pooling {modes or 'none'} is not one an "
            f"embedding run takes ({', '.join(POOLING_MODES)}); set task.pooling"
        )
    return SentencePooling(modes[0], "Normalize" in kinds, str(modules_file))  # type: ignore[arg-type]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per row of `hidden` (batch x positions x width) over the positions `attention_mask` keeps
    (right padding)."""
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        kept = attention_mask.unsqueeze(-1).bool()
        return hidden.masked_fill(~kept, torch.finfo(hidden.dtype).min).amax(1)
    last = attention_mask.sum(1).clamp_min(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def save_sentence_encoder(
    encoder: torch.nn.Module, tokenizer: Any, folder: Path, max_length: int, pooling: SentencePooling
) -> None:
    """Write a plain transformers encoder as a sentence-transformers folder: the encoder at the top (a plain
    transformers folder too: `AutoModel` loads it), then its Pooling module and, if it had one, Normalize:
    `SentenceTransformer(folder).encode(texts)` pools as the run did."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    encoder.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    modules = [
        Transformer(str(folder), max_seq_length=max_length),
        Pooling(encoder.config.hidden_size, pooling_mode=pooling.mode),
    ]
    if pooling.normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder), create_model_card=False)


def sentence_encoder_vectors(folder: Path, texts: list[str]) -> torch.Tensor:
    """Unit-length vectors of `texts` from a sentence-transformers folder, computed by that library itself."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    vectors = model.encode(texts, convert_to_tensor=True, batch_size=len(texts), normalize_embeddings=True)
    return vectors.float().cpu()
