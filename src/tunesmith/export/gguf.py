"""`--format gguf`: the run's decoder merged and written as `model.gguf` (gguf_writer.py), then read back by
llama.cpp itself (llama_reader.py) on the fixed check conversations: every prompt rendered by the file's own
chat template must tokenize to the run's very prompt tokens; f16 and f32 must write the run's greedy answers
token for token and stop where the run stops, or part from one only where the run itself had two tokens within
probe.NEAR_TIE logits (rounding to f16 may swap those); a quantized file must rank first at least MIN_AGREEMENT of
the run's answer tokens, given the same prefix, and the run's own margins where its answers part are recorded.
Needs llama-cpp-python (the `gguf` extra). An Ollama Modelfile is written beside the file when the run's chat
template is one written there (modelfile.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.data.chat_encoding import stop_token_ids
from tunesmith.errors import UserError
from tunesmith.export.gguf_writer import (
    SPM_FILE,
    WRITTEN_QUANTS,
    Generation,
    architecture_refusal,
    write_gguf,
)
from tunesmith.export.llama_reader import INSTALL_HINT, llama_cpp_installed, quantize, read_outputs
from tunesmith.export.modelfile import modelfile_for
from tunesmith.export.probe import NEW_TOKENS, Outputs, Plan, conversations, parting_margin
from tunesmith.inference import RunSpec
from tunesmith.models.catalog import base_file, source_gguf

QUANTS = ("f16", "f32", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
"""--quant for --format gguf and for the server's llama.cpp engine; the first is the default (lossless for these
models' weights in practice: the check asks f16 for the run's exact answers)."""
MIN_AGREEMENT = {"q8_0": 0.9, "q6_k": 0.9, "q5_k_m": 0.85, "q4_k_m": 0.75}
"""Least share of the run's greedy answer tokens (94 on the check prompts) a quantized file must also rank first
after the same prefix. Rounding moves near-ties, so a quantized model's greedy answers may part from the run's
after some tokens. Measured on a SmolLM2-135M LoRA run, one epoch on 24 chats (the smallest model, and a
barely trained one, so the most sensitive to rounding): q8_0 96.8% (4 of 6 answers identical), q6_k 96.8%,
q4_k_m 91.5%; the thresholds leave room for other runs' near-ties."""
MAX_PERPLEXITY_RATIO = {"q8_0": 1.03, "q6_k": 1.03, "q5_k_m": 1.06, "q4_k_m": 1.12}
"""Most a quantized file's perplexity of the run's validation answers may exceed the run's own, as a ratio.
Measured on a SmolLM2-135M LoRA run, 1 epoch on data/debian-chat, 40 validation chats (bench/gguf_engines.py):
f16 1.000, q8_0 1.007, q4_k_m 1.048; about twice those, as rounding costs more on other runs' weights."""
HELD_OUT = 32
"""Validation examples the perplexity ratio is measured on (the first ones; a few seconds on a small model)."""
FILE = "model.gguf"


def gguf_refusal(spec: RunSpec, quant: str | None) -> str | None:
    task, method = spec.task, spec.method
    if task.model_kind != "causal":
        return (
            f"GGUF export is for decoder (causal) models that write text; this {task.name} run is on a "
            f"{task.model_kind} model: use --format merged or onnx"
        )
    if method.cannot_merge:
        return f"the {method.name} run cannot be exported as GGUF: {method.cannot_merge}"
    if quant is not None and quant not in QUANTS:
        return f"unknown --quant {quant!r}; valid for gguf: {', '.join(QUANTS)}"
    if not llama_cpp_installed():
        return f"GGUF export is checked by llama.cpp, which is not installed: {INSTALL_HINT}"
    return None


def gguf_plan(spec: RunSpec, quant: str | None, held_out: Sequence[Any] = ()) -> Plan:
    """How the GGUF is written and checked; `held_out`: the run's validation examples, for the perplexity
    ratio (none: not measured)."""
    quant = quant or QUANTS[0]

    def write(trained: Any, folder: Path) -> None:
        model = spec.method.merged(spec.run.model, spec.base_loader("cpu")).eval()
        with source_gguf(spec.config.model.name) as packaged:
            source = packaged or base_file(spec.config.model.name, SPM_FILE)
            why = architecture_refusal(model.config, source)
            if why:
                raise UserError(why)
            write_file(model, trained, folder, source)

    def write_file(model: Any, trained: Any, folder: Path, source: Path | None) -> None:
        written = quant if quant in WRITTEN_QUANTS else "f16"  # quantized by llama.cpp from the f16 file
        target = folder / FILE
        path = target if written == quant else folder / f".model-{written}.gguf"
        settings = spec.task.params.generation
        generation = Generation(
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p,
            repeat_penalty=settings.repetition_penalty,
        )
        stops = stop_token_ids(trained.tokenizer)
        write_gguf(model, trained.tokenizer, path, written, stops, generation, spec.run.root.name, source)
        if path != target:
            quantize(path, target, quant)
            path.unlink()
        ollama = modelfile_for(trained.tokenizer, stops, generation)
        if ollama is not None:
            (folder / "Modelfile").write_text(ollama.text(FILE), encoding="utf-8")

    def check(trained: Any, folder: Path, reference: Outputs) -> Outputs:
        talks = conversations(trained.task)
        features = trained.task.encode(list(held_out)[:HELD_OUT], trained.tokenizer)
        sequences = [(f["input_ids"], f["labels"]) for f in features]
        read = read_outputs(folder / FILE, talks, reference.tokens, NEW_TOKENS, sequences)
        ours = [trained.task.prompt_ids(messages) for messages in talks]
        same_prompts = sum(a == b for a, b in zip(read.prompt_ids, ours, strict=True))
        ratio = None
        if read.loss[1]:
            batch_size = trained.config.train.eval_batch_size
            run_nll, count = trained.task.summed_loss(trained.model, features, batch_size, trained.pad_id)
            ratio = math.exp((read.loss[0] - run_nll) / count)
        margins = [
            parting_margin(trained.model, prompt, run, other)
            for prompt, run, other in zip(ours, reference.tokens, read.tokens, strict=True)
            if run != other
        ]
        return Outputs({}, read.tokens, read.agreement, same_prompts, ratio, margins)

    return Plan(write, check, 0.0, MIN_AGREEMENT.get(quant), quant, MAX_PERPLEXITY_RATIO.get(quant))
