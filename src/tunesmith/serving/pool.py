"""The served models: each run under its served name, at the version its serving.json names.

Adapter runs (LoRA, DoRA, IA3, LoHa, LoKr) on the same base model, task and head shape share one copy of the
base: each run's adapter is loaded onto it under its own name and made active for that run's batch
(peft's `load_adapter` / `set_adapter`). All model work runs on one worker thread, so a switch never
happens under another batch. A promoted or rolled-back version is loaded beside the serving one and then
swapped in; requests already batched finish on the version they started with. A run served from an export
(engines.py: a chat run's GGUF file with llama.cpp, a classifier's ONNX file with ONNX Runtime) holds no
torch model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import UserError
from tunesmith.inference import TrainedRun, read_run
from tunesmith.models.catalog import resolve_model
from tunesmith.serving.engines import (
    Engine,
    EngineName,
    TorchEngine,
    engine_refusal,
    llama_engine,
    onnx_engine,
)
from tunesmith.versions import Deployment

SHAREABLE_METHODS = ("lora", "dora", "ia3", "loha", "lokr")
"""Methods whose saved folder is a peft adapter that can sit beside others on one base."""


@dataclass
class SharedBase:
    model: torch.nn.Module
    adapters: set[str] = field(default_factory=set)


@dataclass
class ServedModel:
    name: str
    deployment: Deployment
    version: str
    trained: TrainedRun
    """The run's task, config and tokenizer; its `model` is None when llama.cpp writes the answers."""
    engine: Engine
    """What writes a chat model's answers."""
    adapter: str | None = None
    """The adapter to make active on a shared base before each batch; None for a model of its own."""
    shared: bool = False
    loaded_at: float = field(default_factory=time.time)

    @property
    def root(self) -> Path:
        return self.deployment.root

    @property
    def endpoint(self) -> str:
        """What the model answers (Task.endpoint): `classify` (labels), `score` (numbers), `entities`,
        `embeddings` (vectors), `chat` (text) or `none`."""
        return self.trained.task.endpoint

    def activate(self) -> None:
        if self.adapter is not None:
            self.trained.model.set_adapter(self.adapter)


class ModelPool:
    def __init__(
        self,
        runs: dict[str, Path],
        device: str = "auto",
        engine: EngineName = "torch",
        quant: str | None = None,
        context: int = 4096,
        chat_cache_mb: float = 1024,
    ):
        if not runs:
            raise UserError("nothing to serve: give one or more run folders")
        why = engine_refusal(engine, quant)
        if why:
            raise UserError(why)
        self.runs = {name: Deployment(path) for name, path in runs.items()}
        self.device = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
        self.engine, self.quant, self.context = engine, quant, context
        self.chat_cache_bytes = int(chat_cache_mb * 2**20)
        self.models: dict[str, ServedModel] = {}
        self._bases: dict[tuple[Any, ...], SharedBase] = {}
        self._lock = threading.Lock()  # loads may come from the watcher and an admin request at once

    def load_all(self) -> None:
        for name, deployment in self.runs.items():
            self.models[name] = self.load(name, deployment.current())

    def get(self, name: str) -> ServedModel | None:
        """The model served as `name`, or None; a request can never name a path."""
        return self.models.get(name)

    def load(self, name: str, version: str) -> ServedModel:
        """Load `version` of the run served as `name` (call on the worker thread once serving)."""
        from transformers import AutoTokenizer

        deployment = self.runs[name]
        with self._lock:
            folder = deployment.folder(version)
            spec = read_run(folder)
            tokenizer = AutoTokenizer.from_pretrained(spec.run.model)
            spec.task.use_tokenizer(tokenizer)
            if self.from_export(spec.task):
                trained = TrainedRun(spec.run, spec.config, spec.task, tokenizer, None)  # type: ignore[arg-type]
                try:
                    engine: Engine = (
                        llama_engine(folder, self.quant, self.context)
                        if self.engine == "llama.cpp"
                        else onnx_engine(folder, trained)
                    )
                except UserError as exc:
                    raise UserError(f"{name} {version}: cannot serve it with {self.engine}: {exc}") from None
                return ServedModel(name, deployment, version, trained, engine)
            key = self._share_key(spec)
            adapter = None
            if key is not None and key in self._bases:
                base = self._bases[key]
                adapter = f"{name}@{version}"
                if adapter not in base.adapters:
                    base.model.load_adapter(str(spec.run.model), adapter_name=adapter)
                    spec.method.wrapped(base.model)  # LoRA fuses the new adapter's layers too
                    base.adapters.add(adapter)
                model = base.model.to(self.device).eval()
            else:
                model = spec.method.load(spec.run.model, spec.base_loader(self.device)).to(self.device).eval()
                if key is not None:
                    adapter = model.active_adapter
                    self._bases[key] = SharedBase(model, {adapter})
            spec.task.prepare_model(model)
            trained = TrainedRun(spec.run, spec.config, spec.task, tokenizer, model)
            engine = TorchEngine(trained, self.chat_cache_bytes)
            return ServedModel(name, deployment, version, trained, engine, adapter, shared=key is not None)

    def from_export(self, task: Any) -> bool:
        """Whether this pool's engine serves a run of `task` from an export (else the torch model does)."""
        if self.engine == "llama.cpp":
            return bool(task.endpoint == "chat")
        return self.engine == "onnx" and task.serves_from_export

    def _share_key(self, spec: Any) -> tuple[Any, ...] | None:
        if spec.method.name not in SHAREABLE_METHODS:
            return None
        source = resolve_model(spec.config.model.name).source
        return (source, *spec.task.base_model_key(), spec.method.name)

    def shared_with(self, name: str) -> list[str]:
        """Other served names whose adapters sit on the same base as `name`'s."""
        served = self.models[name]
        if not served.shared:
            return []
        return [
            other
            for other, m in self.models.items()
            if other != name and m.shared and m.trained.model is served.trained.model
        ]

    def switch(self, name: str, version: str) -> ServedModel:
        """Serve `version` of `name` from now on (loading it first); the old one finishes its batches."""
        current = self.models[name]
        if current.version == version:
            return current
        fresh = self.load(name, version)
        self.models[name] = fresh
        return fresh

    def pending_switches(self) -> dict[str, str]:
        """Served names whose serving.json now names another version than the one loaded."""
        out = {}
        for name, deployment in self.runs.items():
            try:
                wanted = deployment.current()
                deployment.folder(wanted)
            except UserError:
                continue  # a half-written or wrong serving.json: keep serving what is loaded
            if wanted != self.models[name].version:
                out[name] = wanted
        return out
