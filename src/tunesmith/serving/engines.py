"""What writes a served chat model's answers (`serve --engine`):

torch      the run's own model, as `tunesmith chat` and `eval` run it (the default; also every classifier).
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

    def room(self, prompt_tokens: int) -> int | None:
        """Most new tokens that fit after a prompt this long (<= 0: the prompt does not fit); None: no limit."""
        ...

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        """The answer's tokens, without the stop token (runs on the server's one worker thread)."""
        ...


class TorchEngine:
    label = "torch"

    def __init__(self, trained: TrainedRun):
        self.trained = trained

    def room(self, prompt_tokens: int) -> int | None:
        return None

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        trained = self.trained
        return trained.task.generate_tokens(trained.model, [prompt], 1, trained.pad_id, settings, observer)[0]


class LlamaEngine:
    def __init__(self, path: Path, quant: str, context: int):
        self.label = f"llama.cpp ({quant} GGUF)"
        self.file = LlamaFile(path, context, scores=False)

    def room(self, prompt_tokens: int) -> int | None:
        return self.file.context - prompt_tokens

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
