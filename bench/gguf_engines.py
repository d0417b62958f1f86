"""GGUF: the same run answered by tunesmith's torch engine and by llama.cpp at f16, q8_0 and q4_k_m.

A SmolLM2-135M-Instruct LoRA chat run (or `--model gemma3-270m`; tunesmith's defaults, 1 epoch on
data/debian-chat's 320 training chats; or `--run RUN`) is exported with `tunesmith export --format gguf --quant Q` (each export passes its own
llama.cpp check first; a file the check refuses is reported with why and left out of the table). Then, on the 40 validation chats, one request at a time as a single chat client sends
them (no batching on either side), each engine answers greedily up to 64 new tokens:

- `torch`: the run's own model through tunesmith.generation.generate (what `tunesmith serve` runs), float32;
- `llama.cpp f16 / q8_0 / q4_k_m`: llama-cpp-python on the exported file, all cores.

Per engine: generated tokens per second (answer tokens over the seconds spent answering), the next-token
agreement with the torch engine's greedy answers (the share of its tokens that the engine also ranks first
after the same prefix), and the validation perplexity of the reference answers (exp of the mean negative
log-likelihood of their tokens). File sizes too.

    python bench/gguf_engines.py [--run RUN | --model gemma3-270m] [--json FILE]

(Not bench/gguf.py: run as a script, that name would shadow the gguf package it exports with.)

Last line: `q8_0_speed X.XX q8_0_agreement 0.XXX` (llama.cpp q8_0 tokens/s over the torch engine's, and its
agreement).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "debian-chat"
NEW_TOKENS = 64
QUANTS = ("f16", "q8_0", "q4_k_m")


def train_run(folder: Path, model: str = "smollm2-135m-instruct") -> Path:
    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    tree = {
        "task": {"name": "chat"},
        "model": {"name": model},
        "data": {"train": str(DATA / "train.jsonl"), "validation": str(DATA / "validation.jsonl")},
        "method": {"name": "lora"},
        "output_dir": str(folder / "run"),
    }
    cfg = build_config(tree, ["train.epochs=1", "train.keep=tuned", "evaluation.forgetting=false"])
    return finetune(cfg, Console(file=io.StringIO())).run


def validation_chats() -> list[list[dict[str, str]]]:
    with (DATA / "validation.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["messages"] for line in f if line.strip()]


def torch_side(trained, prompts, answers) -> dict:
    """The run's model: greedy answers one at a time, their speed, and the reference answers' perplexity."""
    from tunesmith.data.chat_encoding import stop_token_ids
    from tunesmith.generation import GenerationSettings, generate

    stops, settings = stop_token_ids(trained.tokenizer), GenerationSettings(max_new_tokens=NEW_TOKENS)
    outputs, seconds = [], 0.0
    for prompt in prompts:
        started = time.perf_counter()
        outputs += generate(trained.model, [prompt], settings, pad_id=trained.pad_id, stop_ids=stops)
        seconds += time.perf_counter() - started
    nll, count = 0.0, 0
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers, strict=True):
            ids = torch.tensor([prompt + answer])
            logits = trained.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, len(prompt) :], reduction="sum"))
            count += len(answer)
    tokens = sum(len(o) for o in outputs)
    return {"outputs": outputs, "tokens_per_second": tokens / seconds, "perplexity": math.exp(nll / count)}


def llama_side(path: Path, prompts, answers, reference) -> dict:
    from tunesmith.export.llama_reader import LlamaFile

    file = LlamaFile(path)
    try:
        tokens, seconds, agreed, total, nll, count = 0, 0.0, 0, 0, 0.0, 0
        for prompt, answer, ref in zip(prompts, answers, reference, strict=True):
            started = time.perf_counter()
            tokens += len(file.greedy(prompt, NEW_TOKENS))
            seconds += time.perf_counter() - started
            a, t = file.agreement(prompt, ref)
            agreed, total = agreed + a, total + t
            loss, n = file.label_loss(prompt + answer, [-100] * len(prompt) + answer)
            nll, count = nll + loss, count + n
    finally:
        file.close()
    return {
        "tokens_per_second": tokens / seconds,
        "agreement": agreed / total,
        "perplexity": math.exp(nll / count),
        "file_mb": path.stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="catalog model to train (no --run)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tunesmith.inference import load_run
    from tunesmith.recipes.export import ExportMismatch, export_run

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_run(Path(tmp), args.model)
        trained = load_run(run)
        chats = validation_chats()
        prompts = [trained.task.prompt_ids(chat[:-1]) for chat in chats]
        answers = [
            trained.tokenizer(chat[-1]["content"] + trained.tokenizer.eos_token, add_special_tokens=False)[
                "input_ids"
            ]
            for chat in chats
        ]
        results = {"torch": torch_side(trained, prompts, answers)}
        reference = results["torch"].pop("outputs")
        checks = {}
        for quant in QUANTS:
            try:
                exported = export_run(run, Path(tmp) / f"gguf-{quant}", "gguf", quant=quant)
            except ExportMismatch as refused:  # the export's own check refused the file: say so, go on
                checks[quant] = {"refused": str(refused)}
                print(f"{quant}: {refused}")
                continue
            checks[quant] = exported.comparison.as_json()
            results[f"llama.cpp {quant}"] = llama_side(
                exported.folder / "model.gguf", prompts, answers, reference
            )
    print(f"{'engine':<18}{'tokens/s':>10}{'agreement':>11}{'perplexity':>12}{'file MB':>9}")
    for name, r in results.items():
        agreement = f"{r['agreement']:.3f}" if "agreement" in r else "-"
        size = f"{r['file_mb']:.0f}" if "file_mb" in r else "-"
        print(f"{name:<18}{r['tokens_per_second']:>10.1f}{agreement:>11}{r['perplexity']:>12.3f}{size:>9}")
    q8 = results["llama.cpp q8_0"]
    line = {
        "q8_0_speed": q8["tokens_per_second"] / results["torch"]["tokens_per_second"],
        "q8_0_agreement": q8["agreement"],
    }
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "export_checks": checks, **line}, indent=2) + "\n"
        )
    print(f"q8_0_speed {line['q8_0_speed']:.2f} q8_0_agreement {line['q8_0_agreement']:.3f}")


if __name__ == "__main__":
    main()
