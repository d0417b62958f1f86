"""Instruction tuning: tunesmith vs TRL's SFTTrainer, same model, data, LoRA settings and answer-only loss.

Model: the packaged SmolLM2-135M-Instruct. Data: data/debian-chat (OpenAI messages; a third of the chats have
two assistant turns). Both sides train LoRA r=16, alpha 32, dropout 0.05 on all attention and MLP projections,
batch 8, lr 1e-3, linear decay, no warmup, max_length 256, loss on every assistant turn only (TRL:
`assistant_only_loss=True`, given SmolLM2's own ChatML template with the {% generation %} markers it needs;
bf16=False since TRL's default bf16 refuses a CPU; other SFTConfig settings are TRL's defaults and are
printed). tunesmith runs with its defaults for chat: random batches, packed, and a loss-only validation each
epoch, counted in its time. A third run is tunesmith with length-grouped padded batches
(`train.group_by_length=true`, `task.packing=false`): faster on a CPU, but on this data it cost eval loss.

The final eval loss is computed the same way for every trained model, outside either library: the plain
transformers loss (labels = input ids on assistant tokens, -100 elsewhere), averaged over the answer tokens of
the validation chats. Tokens/s counts the training tokens (prompt + answer, no padding) per second of training.
Each side runs in its own child process, so peak RSS is its own.

    python bench/chat.py [--epochs 1] [--train-examples 320] [--seeds 1 2] [--no-grouped]

Last line: `speedup X.XX memory X.XX loss_delta +X.XXX` (tunesmith / TRL mean tokens/s, tunesmith / TRL
highest peak RSS, tunesmith - TRL mean eval loss over the seeds).
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_chats(path: Path, limit: int | None = None) -> list[list[dict]]:
    lines = path.read_text(encoding="utf-8").splitlines()[:limit]
    return [json.loads(line)["messages"] for line in lines]


def training_tokens(tokenizer, chats: list[list[dict]], max_length: int) -> int:
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]
    return sum(min(len(ids), max_length) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


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
    model = AutoModelForCausalLM.from_pretrained(path)
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
            bf16=False,  # TRL's default bf16=True refuses to run on a CPU
            seed=args["seed"],
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
            k: getattr(config, k) for k in ("packing", "padding_free", "gradient_checkpointing", "bf16")
        }
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-grouped", action="store_true", help="skip the length-grouped tunesmith run")
    a = parser.parse_args()
    import torch
    from transformers import AutoTokenizer

    from tunesmith.models.catalog import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL).source)  # converts the GGUF once, up front
    chats = read_chats(DATA / "train.jsonl", a.train_examples)
    tokens = training_tokens(tokenizer, chats, TRAIN["max_length"]) * a.epochs
    print(
        f"{MODEL} + LoRA r=16, {len(chats)} chats ({tokens // a.epochs} tokens) x {a.epochs} epoch(s), batch 8, "
        f"lr 1e-3, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    sides = {
        "TRL SFTTrainer": (run_trl, {}),
        "tunesmith": (run_tunesmith, {}),
        "tunesmith, length-grouped": (run_tunesmith, {"packing": False, "group_by_length": True}),
    }
    if a.no_grouped:
        del sides["tunesmith, length-grouped"]
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    print(f"{'':24} {'seed':>4} {'tokens/s':>9} {'train s':>8} {'peak RSS MB':>12} {'eval loss':>10}")
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
                f"{name:24} {seed:4d} {r['tokens_per_second']:9.0f} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} "
                f"{r['eval_loss']:10.4f}",
                flush=True,
            )
    print(f"TRL settings left at their defaults: {runs['TRL SFTTrainer'][0]['settings']}")
    summary = {
        name: {
            "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "eval_loss": statistics.mean(r["eval_loss"] for r in rs),
        }
        for name, rs in runs.items()
    }
    for name, m in summary.items():
        print(
            f"{name:24} mean {m['tokens_per_second']:9.0f} {'':8} {m['peak_rss_mb']:12.0f} {m['eval_loss']:10.4f}"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    trl, ours = summary["TRL SFTTrainer"], summary["tunesmith"]
    if (grouped := summary.get("tunesmith, length-grouped")) is not None:
        print(
            f"length-grouped padded batches vs the default: "
            f"{grouped['tokens_per_second'] / ours['tokens_per_second']:.2f}x tokens/s, "
            f"eval loss {grouped['eval_loss'] - ours['eval_loss']:+.3f}"
        )
    print(
        f"speedup {ours['tokens_per_second'] / trl['tokens_per_second']:.2f} "
        f"memory {ours['peak_rss_mb'] / trl['peak_rss_mb']:.2f} "
        f"loss_delta {ours['eval_loss'] - trl['eval_loss']:+.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
