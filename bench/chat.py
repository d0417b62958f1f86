"""Instruction tuning: tunesmith against TRL's SFTTrainer at its defaults and at its best, same model, data,
LoRA settings, answer-only loss, precision, epochs and seeds.

Model: the packaged SmolLM2-135M-Instruct. Data: data/debian-chat (OpenAI messages; a third of the chats have
two assistant turns). Every side trains LoRA r=16, alpha 32, dropout 0.05 on all attention and MLP
projections, batch 8, lr 1e-3, linear decay, no warmup, max_length 256, loss on every assistant turn only (TRL:
`assistant_only_loss=True`, given SmolLM2's own ChatML template with the {% generation %} markers it needs).
Precision: what tunesmith's `train.precision: auto` picks on this CPU (bf16 autocast where the CPU has native
bf16, fp32 elsewhere), given to TRL as `bf16=` with `use_cpu=True` so the ratio compares like with like.

- TRL defaults: every other SFTConfig setting left as TRL ships it (padded batches, gradient checkpointing on).
- TRL at its best: `BEST` below (packing with best-fit decreasing, padding-free, checkpointing off, SDPA).
- tunesmith: its defaults for chat (random batches of 8 chats packed into rows, a loss-only validation each
  epoch counted in its time). `--grouped` adds tunesmith with length-grouped padded batches.

The final eval loss is computed the same way for every trained model, outside the libraries: the plain
transformers loss (labels = input ids on assistant tokens, -100 elsewhere), averaged over the answer tokens of
the validation chats. Tokens/s counts the training tokens (prompt + answer, no padding) per second of training.
Each side runs in its own child process, so peak RSS is its own. The useful FLOP/s of each side (bench/
machine.py: the model FLOPs of the tokens trained) is printed beside a matmul peak measured in the same run.

    python bench/chat.py [--epochs 1] [--train-examples 320] [--seeds 1 2 3] [--precision auto] [--grouped]

Last line: `speedup_best X.XX speedup_default X.XX memory X.XX loss_delta +X.XXX` (tunesmith / TRL at its best
and / TRL defaults mean tokens/s, tunesmith / TRL at its best highest peak RSS, tunesmith - TRL at its best
mean eval loss over the seeds).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from apart import in_child

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "debian-chat"
MODEL = "smollm2-135m-instruct"
LORA = {"rank": 16, "alpha": 32, "dropout": 0.05}
TRAIN = {"batch_size": 8, "learning_rate": 1e-3, "max_length": 256}

# SmolLM2's template with TRL's {% generation %} markers around each assistant answer and its end-of-turn.
TRL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI "
    "assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# TRL at its best on this CPU, as its docs advise for speed: best-fit-decreasing packing with padding-free
# batches (each packed row a sequence of its own, positions restarting), gradient checkpointing off (TRL's
# default turns it on to save memory, about a third more time a step; tunesmith does not checkpoint either),
# and SDPA attention (the fastest that runs here: 111.7 s against eager's 150.8 s for 96 chats, bf16, seed 1;
# FlashAttention 2/3 and the kernels hub's need a GPU).
BEST = {"packing": True, "packing_strategy": "bfd", "padding_free": True, "gradient_checkpointing": False}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_chats(path: Path, limit: int | None = None) -> list[list[dict]]:
    lines = path.read_text(encoding="utf-8").splitlines()[:limit]
    return [json.loads(line)["messages"] for line in lines]


def token_lengths(tokenizer, chats: list[list[dict]], max_length: int) -> list[int]:
    """Each chat's training tokens (prompt and answers, no padding), cut at max_length."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]
    return [min(len(ids), max_length) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def answer_loss(model, tokenizer, chats: list[list[dict]]) -> float:
    """Mean loss per answer token, by plain transformers (shifted inside the model), the same for all sides."""
    import torch

    from tunesmith.data.chat_encoding import encode_chat

    model.eval()
    total = count = 0.0
    with torch.inference_mode():
        for chat in chats:
            enc = encode_chat(tokenizer, chat, TRAIN["max_length"])
            labels = torch.tensor([enc.labels])
            n = int((labels[:, 1:] != -100).sum())
            out = model(input_ids=torch.tensor([enc.input_ids]), labels=labels)
            total += out.loss.item() * n
            count += n
    return total / count


def run_tunesmith(args: dict, out: mp.Queue) -> None:
    import io

    from rich.console import Console
    from transformers import AutoTokenizer

    from tunesmith.config import build_config
    from tunesmith.models.catalog import resolve_model
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        train.write_text("".join(json.dumps({"messages": c}) + "\n" for c in args["train_chats"]))
        cfg = build_config(
            {
                "task": {"name": "chat", "packing": args.get("packing", True), "eval_generate_examples": 0},
                "model": {"name": MODEL, "max_length": TRAIN["max_length"]},
                "data": {"train": str(train), "validation": args["validation"], "test_fraction": 0.0},
                "method": {"name": "lora", **LORA},
                "train": {
                    "epochs": args["epochs"],
                    "batch_size": TRAIN["batch_size"],
                    "learning_rate": TRAIN["learning_rate"],
                    "seed": args["seed"],
                    "warmup_ratio": 0.0,
                    "weight_decay": 0.0,
                    "metric": "loss",
                    "group_by_length": args.get("group_by_length", False),
                    "precision": args["precision"],
                    "early_stopping_patience": None,
                },
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        result = finetune(cfg, Console(file=io.StringIO()))
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL).source)
        seconds = result.summary["train_seconds"]
        loss = answer_loss(result.model, tokenizer, read_chats(Path(args["validation"])))
    out.put({"seconds": seconds, "eval_loss": loss, "peak_rss_mb": peak_rss_mb()})


def run_trl(args: dict, out: mp.Queue) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunesmith.methods.lora import DEFAULT_TARGETS
    from tunesmith.models.catalog import resolve_model

    path = resolve_model(MODEL).source
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = TRL_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=args.get("attention", "sdpa"))
    peft_config = LoraConfig(
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=DEFAULT_TARGETS["llama"],
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            num_train_epochs=args["epochs"],
            per_device_train_batch_size=TRAIN["batch_size"],
            learning_rate=TRAIN["learning_rate"],
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_length=TRAIN["max_length"],
            assistant_only_loss=True,
            bf16=args["bf16"],  # TRL's default bf16=True refuses a CPU unless use_cpu is set
            use_cpu=True,
            seed=args["seed"],
            **(BEST if args.get("best") else {}),
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
        )
        dataset = Dataset.from_list([{"messages": c} for c in args["train_chats"]])
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        settings = {
            k: getattr(config, k)
            for k in ("packing", "packing_strategy", "padding_free", "gradient_checkpointing", "bf16")
        } | {"attention": model.config._attn_implementation}
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        trained = trainer.model
    tokenizer = AutoTokenizer.from_pretrained(path)  # score with the model's own template, like tunesmith
    loss = answer_loss(trained, tokenizer, read_chats(Path(args["validation"])))
    out.put({"seconds": seconds, "eval_loss": loss, "peak_rss_mb": peak_rss_mb(), "settings": settings})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-examples", type=int, default=320)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="every side's")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--grouped", action="store_true", help="add tunesmith with length-grouped padded batches"
    )
    parser.add_argument("--trl-attention", default="sdpa", help="TRL at its best: attn_implementation")
    a = parser.parse_args()
    import torch
    from machine import describe, linear_weights, matmul_peak, training_flops, write_results
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.hardware import cpu_features
    from tunesmith.models.catalog import resolve_model
    from tunesmith.training.setup import mixed_precision

    source = resolve_model(MODEL).source  # converts the GGUF once, up front
    tokenizer = AutoTokenizer.from_pretrained(source)
    chats = read_chats(DATA / "train.jsonl", a.train_examples)
    lengths = token_lengths(tokenizer, chats, TRAIN["max_length"])
    tokens = sum(lengths) * a.epochs
    bf16 = mixed_precision(a.precision, torch.device("cpu")) == "bf16"
    config = AutoModelForCausalLM.from_pretrained(source)
    flops = a.epochs * training_flops(
        lengths,
        linear_weights(config),
        config.config.hidden_size,
        config.config.num_hidden_layers,
        frozen_base=True,
    )
    del config
    dtype = "bfloat16" if bf16 else "float32"
    peak = matmul_peak(dtype)
    print(f"CPU: {cpu_features().describe()}; torch threads {torch.get_num_threads()}")
    print(
        f"precision {a.precision}: {'bf16 autocast' if bf16 else 'fp32'} on every side; matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s ({dtype}, 2048x2048, measured now)"
    )
    print(
        f"{MODEL} + LoRA r=16, {len(chats)} chats ({tokens // a.epochs} tokens) x {a.epochs} epoch(s), batch 8, "
        f"lr 1e-3; useful work {flops / 1e12:.2f} TFLOP",
        flush=True,
    )
    trl = {"bf16": bf16}
    sides = {
        "TRL defaults": (run_trl, trl),
        "TRL at its best": (run_trl, {**trl, "best": True, "attention": a.trl_attention}),
        "tunesmith": (run_tunesmith, {"precision": a.precision}),
    }
    if a.grouped:
        sides["tunesmith, length-grouped"] = (
            run_tunesmith,
            {"precision": a.precision, "packing": False, "group_by_length": True},
        )
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    print(f"{'':26} {'seed':>4} {'tokens/s':>9} {'train s':>8} {'peak RSS MB':>12} {'eval loss':>10}")
    for seed in a.seeds:
        args = {
            "epochs": a.epochs,
            "seed": seed,
            "train_chats": chats,
            "validation": str(DATA / "validation.jsonl"),
        }
        for name, (fn, extra) in sides.items():
            r = in_child(fn, {**args, **extra})
            r["tokens_per_second"] = tokens / r["seconds"]
            runs[name].append(r)
            print(
                f"{name:26} {seed:4d} {r['tokens_per_second']:9.0f} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} "
                f"{r['eval_loss']:10.4f}",
                flush=True,
            )
    for name in ("TRL defaults", "TRL at its best"):
        print(f"{name} settings: {runs[name][0]['settings']}")
    summary = {
        name: {
            "seeds": len(rs),
            "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in rs),
            "tokens_per_second_sd": spread([r["tokens_per_second"] for r in rs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "eval_loss": statistics.mean(r["eval_loss"] for r in rs),
            "eval_loss_sd": spread([r["eval_loss"] for r in rs]),
            "useful_flops_per_second": flops / statistics.mean(r["seconds"] for r in rs),
        }
        for name, rs in runs.items()
    }
    print(f"{'':26} {'tokens/s':>14} {'peak RSS MB':>12} {'eval loss':>16}  useful FLOP/s")
    for name, m in summary.items():
        print(
            f"{name:26} {m['tokens_per_second']:7.0f} ± {m['tokens_per_second_sd']:4.0f} {m['peak_rss_mb']:12.0f} "
            f"{m['eval_loss']:.4f} ± {m['eval_loss_sd']:.4f}  {describe(m['useful_flops_per_second'], peak)}"
        )
    if a.json:
        write_results(a.json, runs, summary, bf16=bf16, peak=peak, flops=flops)
    best, default, ours = summary["TRL at its best"], summary["TRL defaults"], summary["tunesmith"]
    if (grouped := summary.get("tunesmith, length-grouped")) is not None:
        print(
            f"length-grouped padded batches vs the default: "
            f"{grouped['tokens_per_second'] / ours['tokens_per_second']:.2f}x tokens/s, "
            f"eval loss {grouped['eval_loss'] - ours['eval_loss']:+.3f}"
        )
    print(
        f"speedup_best {ours['tokens_per_second'] / best['tokens_per_second']:.2f} "
        f"speedup_default {ours['tokens_per_second'] / default['tokens_per_second']:.2f} "
        f"memory {ours['peak_rss_mb'] / best['peak_rss_mb']:.2f} "
        f"loss_delta {ours['eval_loss'] - best['eval_loss']:+.3f}"
    )


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    sys.exit(main())
