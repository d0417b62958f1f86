"""What writes a served chat model's answers (`serve --engine`):

torch      the run's own model, as `tunesmith chat` and `eval` run it (the default; also every classifier).
           Concurrent chats decode together in a continuous batch (decoding.py, serving/chat_batcher.py),
           within a key/value cache budget; encoder-decoders and prompt-learning runs answer one at a time.
llama.cpp  the run's version exported to GGUF (`export --format gguf`, checked against the run as that export
           always is) and run by llama.cpp. The export is made once per version and quantization and kept
           beside it, at VERSION/exports/gguf-QUANT/; a later start, or a switch back to that version, reuses it.
           The torch model is never loaded.

Both take the prompt tokens the run's own chat template makes (the GGUF check proved llama.cpp's template
makes the same ones), and both end an answer at the run's stop tokens, at max_tokens, or where the observer
(stop strings, a client that left) says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from tunesmith.decoding import DecodeBatch, token_room
from tunesmith.export.gguf import FILE, QUANTS
from tunesmith.export.llama_reader import INSTALL_HINT, LlamaFile, llama_cpp_installed
from tunesmith.generation import GenerationSettings, TokenObserver
from tunesmith.inference import TrainedRun
from tunesmith.recipes.export import RECORD, export_run
from tunesmith.runs import RunFolder, writing
from tunesmith.serving.settings import EngineName


class Engine(Protocol):
    label: str
    """How the startup line and /v1/models name it."""
    room_setting: str
    """The serve setting that bounds `room`."""

    def room(self, prompt_tokens: int) -> int | None:
        """Most new tokens that fit after a prompt this long (<= 0: the prompt does not fit); None: no limit."""
        ...

    def decode_batch(self, max_rows: int) -> DecodeBatch | None:
        """A fresh continuous batch that decodes several answers at once (serving/chat_batcher.py), or None
        when this engine answers one request at a time (`generate`)."""
        ...

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        """The answer's tokens, without the stop token (runs on the server's one worker thread)."""
        ...


class TorchEngine:
    label = "torch"
    room_setting = "chat_cache_mb"

    def __init__(self, trained: TrainedRun, cache_bytes: int):
        self.trained = trained
        self.cache_bytes = cache_bytes
        """The key/value cache budget of a continuous batch (serve setting chat_cache_mb)."""

    def room(self, prompt_tokens: int) -> int | None:
        if self.decode_batch(1) is None:
            return None
        return token_room(self.trained.model, self.cache_bytes) - prompt_tokens

    def decode_batch(self, max_rows: int) -> DecodeBatch | None:
        trained = self.trained
        return trained.task.decode_batch(trained.model, trained.pad_id, self.cache_bytes, max_rows)

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        trained = self.trained
        return trained.task.generate_tokens(trained.model, [prompt], 1, trained.pad_id, settings, observer)[0]


class LlamaEngine:
    room_setting = "context_tokens"

    def __init__(self, path: Path, quant: str, context: int):
        self.label = f"llama.cpp ({quant} GGUF)"
        self.file = LlamaFile(path, context, scores=False)

    def room(self, prompt_tokens: int) -> int | None:
        return self.file.context - prompt_tokens

    def decode_batch(self, max_rows: int) -> DecodeBatch | None:
        return None  # llama-cpp-python's Llama decodes one sequence at a time

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        return self.file.generate(prompt, settings, observer)


def llama_engine(folder: Path, quant: str | None, context: int) -> LlamaEngine:
    """The llama.cpp engine for the run version in `folder`: its GGUF export, made now if it is not there."""
    quant = quant or QUANTS[0]
    target = folder / "exports" / f"gguf-{quant}"
    if not _exported(target, RunFolder(folder), quant):
        with writing(target.parent, "tunesmith serve --engine llama.cpp"):
            export_run(folder, target, "gguf", overwrite=True, quant=quant)
    return LlamaEngine(target / FILE, quant, context)


def _exported(folder: Path, run: RunFolder, quant: str) -> bool:
    """`folder` holds a checked GGUF export at this quantization, written after the run's model last changed."""
    try:
        said = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        newer = (folder / RECORD).stat().st_mtime >= (run.model / "tunesmith.json").stat().st_mtime
    except (OSError, ValueError):
        return False
    return newer and said.get("format") == "gguf" and said.get("quant") == quant and (folder / FILE).is_file()


def engine_refusal(engine: EngineName, quant: str | None) -> str | None:
    """Why the server cannot start with this engine, known before any run is read."""
    if engine == "torch":
        return "--quant is for --engine llama.cpp" if quant is not None else None
    if quant is not None and quant not in QUANTS:
        return f"unknown --quant {quant!r}; valid for llama.cpp: {', '.join(QUANTS)}"
    if not llama_cpp_installed():
        return f"the llama.cpp engine needs llama-cpp-python: {INSTALL_HINT}"
    return None
