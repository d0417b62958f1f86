"""What computes a served model's answers (`serve --engine`):

torch      the run's own model, as `tunesmith chat`, `predict` and `eval` run it (the default). Concurrent
           chats decode together in a continuous batch (decoding.py, serving/chat_batcher.py), within a
           key/value cache budget; encoder-decoders and prompt-learning runs answer one at a time.
llama.cpp  chat runs: the run's version exported to GGUF (`export --format gguf`, checked against the run as
           that export always is) and run by llama.cpp. Other runs are served by torch.
onnx       scoring runs whose task says so (classification, multilabel, regression, embedding): the run's
           version exported to ONNX (`export --format onnx`, checked against the run to 1e-4) and run by
           ONNX Runtime; the task turns its scores into the same answers. Other runs are served by torch.

An export is made once per version (and quantization) and kept beside it, at VERSION/exports/gguf-QUANT/ or
VERSION/exports/onnx/; a later start, or a switch back to that version, reuses it. A run served from an
export never loads its torch model. Chat engines take the prompt tokens the run's own chat template makes
(the GGUF check proved llama.cpp's template makes the same ones), and end an answer at the run's stop
tokens, at max_tokens, or where the observer (stop strings, a client that left) says.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Protocol

import torch

from tunesmith.decoding import DecodeBatch, token_room
from tunesmith.export.gguf import FILE, QUANTS
from tunesmith.export.llama_reader import INSTALL_HINT, LlamaFile, llama_cpp_installed
from tunesmith.generation import GenerationSettings, TokenObserver
from tunesmith.inference import TrainedRun
from tunesmith.recipes.export import ONNX_FILE, RECORD, Format, export_run
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

    def serve_inputs(self, inputs: list[Any], batch_size: int) -> list[Any]:
        """One batch of a scoring model's inputs (classify, score, embeddings, entities): one answer each, the
        task's own (Task.serve_inputs)."""
        ...

    def dimensions(self) -> int:
        """The width of an embedding model's vectors."""
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
        return trained.task.decode_batch(trained.model, self.cache_bytes, max_rows)

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        trained = self.trained
        return trained.task.generate_tokens(trained.model, [prompt], 1, trained.pad_id, settings, observer)[0]

    def serve_inputs(self, inputs: list[Any], batch_size: int) -> list[Any]:
        trained = self.trained
        return trained.task.serve_inputs(trained.model, inputs, trained.pad_id, batch_size)

    def dimensions(self) -> int:
        return int(self.trained.task.dimensions(self.trained.model))


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

    def serve_inputs(self, inputs: list[Any], batch_size: int) -> list[Any]:
        raise TypeError("the llama.cpp engine writes chat answers only")

    def dimensions(self) -> int:
        raise TypeError("the llama.cpp engine writes chat answers only")


class OnnxEngine:
    """A scoring model's answers from its ONNX export, run by ONNX Runtime on the CPU; the task turns the
    export's scores into the same answers as the torch model's (Task.serve_exported)."""

    label = "ONNX Runtime"
    room_setting = ""

    def __init__(self, path: Path, trained: TrainedRun, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.trained = trained

    def scores(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The export's outputs for a padded batch (the inputs the file takes, from `batch`)."""
        feed = {name: batch[name].numpy() for name in self.inputs}
        results = self.session.run(self.outputs, feed)
        return {name: torch.from_numpy(r) for name, r in zip(self.outputs, results, strict=True)}

    def serve_inputs(self, inputs: list[Any], batch_size: int) -> list[Any]:
        trained = self.trained
        return trained.task.serve_exported(self.scores, inputs, trained.pad_id, batch_size)

    def dimensions(self) -> int:
        return int(self.session.get_outputs()[0].shape[-1])

    def room(self, prompt_tokens: int) -> int | None:
        return None

    def decode_batch(self, max_rows: int) -> DecodeBatch | None:
        return None

    def generate(self, prompt: list[int], settings: GenerationSettings, observer: TokenObserver) -> list[int]:
        raise TypeError("the ONNX engine serves scoring models only")


def llama_engine(folder: Path, quant: str | None, context: int) -> LlamaEngine:
    """The llama.cpp engine for the run version in `folder`: its GGUF export, made now if it is not there."""
    quant = quant or QUANTS[0]
    target = _export(folder, f"gguf-{quant}", "gguf", quant, FILE, "llama.cpp")
    return LlamaEngine(target / FILE, quant, context)


def onnx_engine(folder: Path, trained: TrainedRun) -> OnnxEngine:
    """The ONNX Runtime engine for the run version in `folder`: its ONNX export (checked against the run to
    1e-4, as that export always is), made now if it is not there."""
    target = _export(folder, "onnx", "onnx", None, ONNX_FILE, "onnx")
    return OnnxEngine(target / ONNX_FILE, trained, torch.get_num_threads())


def _export(folder: Path, name: str, fmt: Format, quant: str | None, file: str, engine: str) -> Path:
    """VERSION/exports/NAME: the version's checked export in `fmt`, made now unless it is there already."""
    target = folder / "exports" / name
    if not _exported(target, RunFolder(folder), fmt, quant, file):
        with writing(target.parent, f"tunesmith serve --engine {engine}"):
            export_run(folder, target, fmt, overwrite=True, quant=quant)
    return target


def _exported(folder: Path, run: RunFolder, fmt: Format, quant: str | None, file: str) -> bool:
    """`folder` holds a checked export in this format and quantization, written after the run's model last
    changed."""
    try:
        said = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        newer = (folder / RECORD).stat().st_mtime >= (run.model / "tunesmith.json").stat().st_mtime
    except (OSError, ValueError):
        return False
    return newer and said.get("format") == fmt and said.get("quant") == quant and (folder / file).is_file()


def engine_refusal(engine: EngineName, quant: str | None) -> str | None:
    """Why the server cannot start with this engine, known before any run is read."""
    if engine in ("torch", "onnx") and quant is not None:
        return "--quant is for --engine llama.cpp"
    if engine == "torch":
        return None
    if engine == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        return (
            f"the onnx engine needs {', '.join(missing)}: pip install 'tunesmith[onnx]'" if missing else None
        )
    if quant is not None and quant not in QUANTS:
        return f"unknown --quant {quant!r}; valid for llama.cpp: {', '.join(QUANTS)}"
    if not llama_cpp_installed():
        return f"the llama.cpp engine needs llama-cpp-python: {INSTALL_HINT}"
    return None
