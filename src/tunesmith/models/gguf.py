"""Packaged GGUF weights -> a plain safetensors model folder, converted once and cached.

transformers can read a GGUF file (it dequantizes to float tensors, which is what LoRA and full fine-tuning
need), but that takes 20-60 s and `save_pretrained` refuses a GGUF-loaded model. So the first use converts:
load from GGUF, rebuild the model from its config without the GGUF quantization record, copy the weights,
save as safetensors with the tokenizer. Later uses load the cached folder in about a second.
The cache lives in $TUNESMITH_CACHE (default ~/.cache/tunesmith) and is written to a temporary folder and
renamed, so an interrupted conversion never leaves a half folder behind.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunesmith.errors import UserError


def cache_root() -> Path:
    return Path(os.environ.get("TUNESMITH_CACHE", Path.home() / ".cache" / "tunesmith"))


def _fingerprint(path: Path) -> str:
    """Cheap identity of a GGUF file: its size and the hash of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def converted_parts(name: str, parts: list[Path], filename: str, sha256: str) -> Path:
    """The safetensors folder for a GGUF shipped in chunks: on first use the chunks are joined into a
    temporary file, checked against `sha256`, converted, and the joined file deleted."""
    target = cache_root() / "models" / f"{name}-{sha256[:12]}"
    if (target / "config.json").is_file():
        return target
    with joined_parts(name, parts, filename, sha256) as joined:
        return converted_folder(name, joined, target=target)


@contextmanager
def joined_parts(name: str, parts: list[Path], filename: str, sha256: str) -> Iterator[Path]:
    """The chunks joined into one temporary file, checked against `sha256`, for as long as the block runs."""
    scratch = cache_root() / f".join-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    joined = scratch / filename
    digest = hashlib.sha256()
    try:
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise UserError(
                f"model {name!r}: the joined GGUF chunks have sha256 {digest.hexdigest()[:12]}..., expected "
                f"{sha256[:12]}...; reinstall its packages"
            )
        yield joined
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def converted_folder(name: str, gguf_path: Path, target: Path | None = None) -> Path:
    """The safetensors folder for `gguf_path`, converting it on first use."""
    target = target or cache_root() / "models" / f"{name}-{_fingerprint(gguf_path)}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    config = copy.deepcopy(loaded.config)  # the loaded model already carries it: no third read of the GGUF
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict())
    if getattr(loaded, "generation_config", None) is not None:
        model.generation_config = loaded.generation_config
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
