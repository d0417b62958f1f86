"""`tunesmith export RUN --format merged|adapter|onnx|gguf [--quant Q] --out DIR`.

merged   a plain Hugging Face model folder (safetensors, tokenizer with its chat template, generation config):
         the trained update folded into the base weights; a QLoRA base is dequantized first. A classifier
         with a mean-pooled head (the default) is written as a sentence-transformers model whose output is
         the class logits (models/pooled.py): transformers has no class for that head.
adapter  the bare trained weights on top of the base: a peft adapter folder (`PeftModel.from_pretrained`), or
         for bottleneck adapters our own safetensors file.
onnx     an encoder model (classifier, span QA, sentence encoder) as `model.onnx` with its tokenizer and label
         config; a sentence encoder's graph outputs its unit-length sentence vectors (`embeddings`).
sentence-transformers
         an embedding run (or a mean-pooled classifier) merged as a sentence-transformers folder:
         `SentenceTransformer(path).encode(texts)` gives the run's vectors (for an embedding run, merged is
         the same folder).
gguf     a decoder model merged, as one `model.gguf` for llama.cpp, Ollama and LM Studio (export/gguf_writer.py):
         f16 by default, or f32, written here; q8_0, q4_k_m, q5_k_m, q6_k by llama.cpp's own quantizer. Checked
         by llama.cpp itself (export/llama_reader.py): the prompts its chat template renders, its greedy answers
         and where they stop.

Every export is written to a hidden folder beside the target, loaded back the way a user would load it, and
run on a fixed batch (export/probe.py) next to the run's own model: the logits must agree within a stated
tolerance, and a text-writing model must write the same greedy tokens. Only then is the folder moved into
place; a mismatch leaves nothing behind and exits non-zero. Refusals (a method that cannot be merged, a format
the task has no use for) come before any weights load.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from tunesmith.errors import UserError, WriteFailed, is_write_failure
from tunesmith.export.gguf import gguf_plan, gguf_refusal
from tunesmith.export.probe import TEXTS, Comparison, Outputs, Plan, compare, encoder_batch, outputs_of
from tunesmith.files import write_json_atomic
from tunesmith.inference import RunSpec, load_run, read_run
from tunesmith.models.catalog import ResolvedModel
from tunesmith.recipes.prepare import load_splits

Format = Literal["merged", "adapter", "onnx", "gguf", "sentence-transformers"]
FORMATS: tuple[Format, ...] = ("merged", "adapter", "onnx", "gguf", "sentence-transformers")

ADAPTER_TOLERANCE = 1e-5
"""The same weights loaded the same way: any difference at all would be a bug."""
ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-4
"""ONNX Runtime's kernels sum in another order than torch's."""
RECORD = "tunesmith_export.json"


class ExportMismatch(UserError):
    """The exported artefact does not reproduce the run's model; nothing was written."""

    exit_code = 1


@dataclass
class ExportResult:
    folder: Path
    format: Format
    comparison: Comparison


def refusal(spec: RunSpec, fmt: Format, quant: str | None = None) -> str | None:
    """Why `fmt` cannot be made from this run, known from its config alone."""
    method, task = spec.method, spec.task
    if quant is not None and fmt != "gguf":
        return f"--quant is for --format gguf, not {fmt}"
    if fmt == "gguf":
        return gguf_refusal(spec, quant)
    why = task.export_refusal(fmt)
    if why:
        return why
    if fmt == "sentence-transformers" and task.merged_layout != "sentence-transformers":
        return (
            f"a {task.name} run is not a sentence-transformers model (embedding runs and mean-pooled "
            "classifiers are): use --format merged"
        )
    if fmt in ("merged", "sentence-transformers") and method.cannot_merge:
        return f"the {method.name} run cannot be exported merged: {method.cannot_merge}"
    if fmt == "adapter" and method.saves_full_model:
        return f"the {method.name} run trained the whole model, so there is no adapter: use --format merged"
    if fmt == "onnx":
        if task.model_kind != "encoder":
            return (
                f"ONNX export is for encoder models (classifiers, span QA); this {task.name} run is on a "
                f"{task.model_kind} model: use --format merged"
            )
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            return f"ONNX export needs {', '.join(missing)}: pip install 'tunesmith[onnx]'"
    return None


def export_run(
    run_path: Path, out: Path, fmt: Format, overwrite: bool = False, quant: str | None = None
) -> ExportResult:
    spec = read_run(run_path)
    why = refusal(spec, fmt, quant)
    if why:
        raise UserError(why)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise UserError(f"{out} is not empty; use --overwrite to replace it, or another --out")
        if not (out / RECORD).is_file():
            raise UserError(f"{out} is not empty and is not a tunesmith export; refusing to overwrite it")
    root, target = spec.run.root.resolve(), out.resolve()
    kept = (spec.run.model.resolve(), spec.run.checkpoints.resolve())
    if target in (root, *kept) or any(folder in target.parents for folder in kept):
        raise UserError(f"{out} would overwrite the run's own files; export to a folder of its own")

    trained = load_run(run_path)
    reference = outputs_of(trained.task, trained.tokenizer, trained.model, trained.pad_id)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        plan = WRITERS[fmt](spec, quant)
        plan.write(trained, partial)
        comparison = compare(reference, plan.check(trained, partial, reference), plan)
        if not comparison.ok:
            raise ExportMismatch(
                f"the {fmt} export does not reproduce the run's model on the check batch: "
                f"{comparison.describe()}; nothing was written to {out}"
            )
        write_json_atomic(
            partial / RECORD,
            {
                "run": str(spec.run.root.resolve()),
                "format": fmt,
                **({"quant": plan.quant} if plan.quant else {}),
                "method": spec.method.name,
                "task": spec.task.name,
                "base_model": spec.config.model.name,
                "check": comparison.as_json(),
            },
        )
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if is_write_failure(exc):
            raise WriteFailed(
                f"cannot write the {fmt} export ({exc}); nothing was written to {out}, and an earlier export "
                "there is kept"
            ) from None
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(partial, out)
    return ExportResult(out, fmt, comparison)


# --- merged ---
def _merged(spec: RunSpec, quant: str | None) -> Plan:
    sentence_transformer = spec.task.merged_layout == "sentence-transformers"

    def write(trained: Any, folder: Path) -> None:
        model = spec.method.merged(spec.run.model, spec.base_loader("cpu"))
        if sentence_transformer:
            trained.task.save_sentence_transformer(model, folder)
            return
        if hasattr(model.config, "use_cache") and spec.task.model_kind != "encoder":
            model.config.use_cache = True  # training turns the cache off; generation wants it back
        model.save_pretrained(folder, safe_serialization=True)
        trained.tokenizer.save_pretrained(folder)  # with the chat template the run trained with

    def check(trained: Any, folder: Path, reference: Outputs) -> Outputs:
        if sentence_transformer:  # read by the sentence-transformers library itself
            return Outputs(trained.task.sentence_transformer_scores(folder, list(TEXTS)), [])
        model = spec.task.load_model(ResolvedModel(str(folder), True))  # plain transformers Auto* class
        return outputs_of(trained.task, trained.tokenizer, model.eval(), trained.pad_id)

    return Plan(write, check, spec.method.merge_tolerance)


# --- adapter ---
def _adapter(spec: RunSpec, quant: str | None) -> Plan:
    def write(trained: Any, folder: Path) -> None:
        spec.method.save(trained.model, folder)
        trained.tokenizer.save_pretrained(folder)

    def check(trained: Any, folder: Path, reference: Outputs) -> Outputs:
        model = spec.method.load(folder, spec.base_loader("cpu")).eval()
        return outputs_of(trained.task, trained.tokenizer, model, trained.pad_id)

    return Plan(write, check, ADAPTER_TOLERANCE)


# --- onnx ---
class _ScoresOnly(torch.nn.Module):
    """The task's export scores of the model (Task.export_scores: class or span logits, sentence vectors) as
    a tuple, the shape torch.onnx.export wants; its inputs are the check batch's, in `inputs` order."""

    def __init__(self, task: Any, model: torch.nn.Module, names: list[str], inputs: list[str]):
        super().__init__()
        self.task, self.model, self.names, self.inputs = task, model, names, inputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.task.export_scores(self.model, dict(zip(self.inputs, tensors, strict=True)))
        return tuple(out[n] for n in self.names)


def _onnx(spec: RunSpec, quant: str | None) -> Plan:
    names: list[str] = []

    def write(trained: Any, folder: Path) -> None:
        model = (
            spec.method.merged(spec.run.model, spec.base_loader("cpu"))
            if not spec.method.cannot_merge
            else trained.model
        ).eval()
        # Traced on two rows cut to their own length; checked on the whole batch, so a shape the trace
        # froze into the graph shows up as a mismatch.
        full = encoder_batch(trained.task, trained.tokenizer)
        length = int(full["attention_mask"][:2].sum(dim=1).max())
        batch = {k: v[:2, :length] for k, v in full.items()}
        names.extend(trained.task.export_scores(model, batch))
        inputs = list(batch)  # input_ids, attention_mask, and token_type_ids for a pair run
        dynamic = {0: "batch", 1: "sequence"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on Python control flow: the check below decides
            torch.onnx.export(
                _ScoresOnly(trained.task, model, names, inputs),
                tuple(batch[k] for k in inputs),
                str(folder / ONNX_FILE),
                input_names=inputs,
                output_names=names,
                dynamic_axes={
                    **dict.fromkeys(inputs, dynamic),
                    **{n: {0: "batch"} for n in names},
                },
                dynamo=False,
            )
        base_config = getattr(model, "config", None) or trained.model.config
        base_config.save_pretrained(folder)  # labels (id2label) for whoever serves the ONNX file
        trained.tokenizer.save_pretrained(folder)

    def check(trained: Any, folder: Path, reference: Outputs) -> Outputs:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
        batch = encoder_batch(trained.task, trained.tokenizer)
        results = session.run(names, {k: v.numpy() for k, v in batch.items()})
        return Outputs({n: torch.from_numpy(r) for n, r in zip(names, results, strict=True)}, [])

    return Plan(write, check, spec.method.merge_tolerance + ONNX_TOLERANCE)


def _gguf(spec: RunSpec, quant: str | None) -> Plan:
    """gguf_plan with the run's validation examples (read as training split them) for the perplexity ratio;
    none when the run's data is no longer there: the export then records no ratio rather than fail."""
    try:
        validation = load_splits(spec.task, spec.config).validation
    except (UserError, OSError):
        validation = []
    return gguf_plan(spec, quant, validation)


WRITERS: dict[Format, Callable[[RunSpec, str | None], Plan]] = {
    "merged": _merged,
    "adapter": _adapter,
    "onnx": _onnx,
    "gguf": _gguf,
    "sentence-transformers": _merged,  # what merged writes for a task whose merged layout it is
}
