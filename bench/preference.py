"""Preference tuning: tunesmith vs TRL's DPOTrainer, same model, pairs, LoRA settings and DPO loss.

Model: the packaged SmolLM2-135M-Instruct. Data: data/debian-preference (TRL prompt/chosen/rejected records:
the Debian helper's house answer chosen over the maintainer's rambling paragraph or over another package's
synopsis). Every side trains LoRA r=16, alpha 32, dropout 0 on all attention and MLP projections, DPO
(sigmoid, beta 0.1), batch 8, lr 5e-4, linear decay, no warmup, no weight decay, max_length 256, 1 epoch
(--epochs: more).

Sides, each in its own child process (so peak RSS is its own):
- TRL DPOTrainer with its defaults (bf16=False: TRL's default bf16 refuses a CPU), the reference from the
  model with its adapter off at every step;
- TRL DPOTrainer at its best on a CPU, as its docs advise: `precompute_ref_log_probs=True` (the reference
  log-probabilities computed once before training, no reference pass per step) and gradient checkpointing off
  (TRL turns it on by default; it trades speed for memory, and a 135M model needs no memory saved). TRL's
  padding-free batches need FlashAttention, which a CPU has not;
- tunesmith with its defaults for the preference task: each pair packed as one segment, its prompt once and
  both answers after it, several pairs to a row, no padding (data/shared_prefix.py); only the answer
  positions through the output layer; the reference from the adapter switched off, computed the first time
  an example trains and stored for later epochs; validation skipped, as TRL's default has none.

Held-out reward accuracy is computed the same way for every trained model: DPO's implicit reward of each
test pair's chosen and rejected answer (beta x the log-probability ratio of the model to the same model with
its adapter off, over the answer tokens of the chat-rendered pair), counted right when the chosen one's is
higher. Tokens/s counts the training tokens (prompt + answer of both sides, no padding) per second of training.

    python bench/preference.py [--train-examples 96] [--epochs 1] [--seeds 1 2 3] [--sides ...] [--json FILE]

Last line: `speedup X.XX memory X.XX reward_acc_delta +X.XXX` (tunesmith / the faster TRL side's mean
tokens/s, tunesmith / that side's highest peak RSS, tunesmith - that side's mean held-out reward accuracy).
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
DATA = ROOT / "data" / "debian-preference"
MODEL = "smollm2-135m-instruct"
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0}
TRAIN = {"batch_size": 8, "learning_rate": 5e-4, "max_length": 256, "beta": 0.1}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_pairs(path: Path, limit: int | None = None) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:limit]]


def encoded(tokenizer, pair: dict) -> list:
    from tunesmith.data.chat_encoding import encode_chat

    return [
        encode_chat(
            tokenizer, [*pair["prompt"], {"role": "assistant", "content": pair[side]}], TRAIN["max_length"]
        )
        for side in ("chosen", "rejected")
    ]


def training_tokens(tokenizer, pairs: list[dict]) -> int:
    return sum(e.length for pair in pairs for e in encoded(tokenizer, pair))


def reward_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs whose chosen answer gets the higher DPO reward (the model vs itself with the adapter
    off), the same computation for every side."""
    import torch

    from tunesmith.tasks.preference.scoring import batch_scores, padded

    model.eval()
    right = 0
    with torch.inference_mode():
        for start in range(0, len(pairs), 8):
            chunk = [encoded(tokenizer, p) for p in pairs[start : start + 8]]
            rows = [(e.input_ids, e.labels) for e in [c[0] for c in chunk] + [c[1] for c in chunk]]
            s = batch_scores(model, padded(rows, tokenizer.pad_token_id), True, "adapter off")
            margin = (s.chosen - s.reference_chosen) - (s.rejected - s.reference_rejected)
            right += int((margin > 0).sum())
    return right / len(pairs)


def run_tunesmith(args: dict, out: mp.Queue) -> None:
    import io

    from rich.console import Console
    from transformers import AutoTokenizer

    from tunesmith.config import build_config
    from tunesmith.models.catalog import resolve_model
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        train.write_text("".join(json.dumps(p) + "\n" for p in args["train_pairs"]))
        cfg = build_config(
            {
                "task": {"name": "preference", "loss": "dpo", "loss_params": {"beta": TRAIN["beta"]}},
                "model": {"name": MODEL, "max_length": TRAIN["max_length"]},
                "data": {"train": str(train), "validation_fraction": 0.0, "test_fraction": 0.0},
                "method": {"name": "lora", **LORA},
                "train": {
                    "epochs": args["epochs"],
                    "batch_size": TRAIN["batch_size"],
                    "learning_rate": TRAIN["learning_rate"],
                    "seed": args["seed"],
                    "warmup_ratio": 0.0,
                    "weight_decay": 0.0,
                    "early_stopping_patience": None,
                },
                "evaluation": {"forgetting": False},
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        result = finetune(cfg, Console(file=io.StringIO()))
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL).source)
        seconds = result.summary["train_seconds"]
        accuracy = reward_accuracy(result.model, tokenizer, args["test_pairs"])
    out.put({"seconds": seconds, "reward_accuracy": accuracy, "peak_rss_mb": peak_rss_mb()})


def run_trl(args: dict, out: mp.Queue) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tunesmith.methods.lora import DEFAULT_TARGETS
    from tunesmith.models.catalog import resolve_model

    path = resolve_model(MODEL).source
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    peft_config = LoraConfig(
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=DEFAULT_TARGETS["llama"],
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = DPOConfig(
            output_dir=tmp,
            num_train_epochs=args["epochs"],
            per_device_train_batch_size=TRAIN["batch_size"],
            learning_rate=TRAIN["learning_rate"],
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_length=TRAIN["max_length"],
            beta=TRAIN["beta"],
            bf16=False,  # TRL's default bf16=True refuses to run on a CPU
            seed=args["seed"],
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
            **args.get("trl", {}),
        )
        dataset = Dataset.from_list(  # TRL's conversational form: each answer an assistant message
            [
                {
                    "prompt": p["prompt"],
                    "chosen": [{"role": "assistant", "content": p["chosen"]}],
                    "rejected": [{"role": "assistant", "content": p["rejected"]}],
                }
                for p in args["train_pairs"]
            ]
        )
        trainer = DPOTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        settings = {
            k: getattr(config, k)
            for k in ("precompute_ref_log_probs", "padding_free", "gradient_checkpointing", "loss_type")
        }
        started = time.perf_counter()
        trainer.train()  # a precomputed reference is computed in here, and counted
        seconds = time.perf_counter() - started
        trained = trainer.model
    accuracy = reward_accuracy(trained, tokenizer, args["test_pairs"])
    out.put(
        {"seconds": seconds, "reward_accuracy": accuracy, "peak_rss_mb": peak_rss_mb(), "settings": settings}
    )


SIDES = {
    "TRL DPOTrainer": (run_trl, {}),
    "TRL, best CPU": (run_trl, {"trl": {"precompute_ref_log_probs": True, "gradient_checkpointing": False}}),
    "tunesmith": (run_tunesmith, {}),
}


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    return {
        name: {
            "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in rs),
            "tokens_per_second_sd": statistics.stdev(r["tokens_per_second"] for r in rs)
            if len(rs) > 1
            else 0.0,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "reward_accuracy": statistics.mean(r["reward_accuracy"] for r in rs),
            "reward_accuracy_sd": statistics.stdev(r["reward_accuracy"] for r in rs) if len(rs) > 1 else 0.0,
        }
        for name, rs in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-examples", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--sides", nargs="+", choices=list(SIDES), default=list(SIDES), help="run only these (no last line)"
    )
    a = parser.parse_args()
    import torch
    from transformers import AutoTokenizer

    from tunesmith.models.catalog import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL).source)  # converts the GGUF once, up front
    train_pairs = read_pairs(DATA / "train.jsonl", a.train_examples)
    test_pairs = read_pairs(DATA / "test.jsonl")
    tokens = training_tokens(tokenizer, train_pairs)
    print(
        f"{MODEL} + LoRA r=16, DPO beta 0.1, {len(train_pairs)} pairs ({tokens} tokens) x {a.epochs} epoch(s), batch 8, "
        f"lr 5e-4, {len(test_pairs)} held-out pairs, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {name: [] for name in a.sides}
    print(f"{'':22} {'seed':>4} {'tokens/s':>9} {'train s':>8} {'peak RSS MB':>12} {'reward acc':>11}")
    for seed in a.seeds:
        args = {"seed": seed, "train_pairs": train_pairs, "test_pairs": test_pairs, "epochs": a.epochs}
        for name in a.sides:
            fn, extra = SIDES[name]
            r = in_child(fn, {**args, **extra})
            r["tokens_per_second"] = tokens * a.epochs / r["seconds"]
            runs[name].append(r)
            print(
                f"{name:22} {seed:4d} {r['tokens_per_second']:9.0f} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} "
                f"{r['reward_accuracy']:11.3f}",
                flush=True,
            )
    for name in ("TRL DPOTrainer", "TRL, best CPU"):
        if name in runs:
            print(f"{name} settings: {runs[name][0]['settings']}")
    summary = summarize(runs)
    for name, m in summary.items():
        print(
            f"{name:22} mean {m['tokens_per_second']:9.0f} ±{m['tokens_per_second_sd']:.0f} "
            f"{m['peak_rss_mb']:12.0f} {m['reward_accuracy']:11.3f} ±{m['reward_accuracy_sd']:.3f}"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    if set(a.sides) != set(SIDES):
        return
    ours = summary["tunesmith"]
    best = max(("TRL DPOTrainer", "TRL, best CPU"), key=lambda n: summary[n]["tokens_per_second"])
    trl = summary[best]
    print(f"against the faster TRL side: {best}")
    print(
        f"speedup {ours['tokens_per_second'] / trl['tokens_per_second']:.2f} "
        f"memory {ours['peak_rss_mb'] / trl['peak_rss_mb']:.2f} "
        f"reward_acc_delta {ours['reward_accuracy'] - trl['reward_accuracy']:+.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
