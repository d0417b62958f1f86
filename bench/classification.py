"""tunesmith vs the plain Hugging Face Trainer + PEFT recipe: same model, data and LoRA settings.

The baseline is the recipe tutorials teach: tokenize the dataset with padding="max_length", max_length=128,
default TrainingArguments (AdamW, linear decay, no evaluation), batch 16, Trainer.train(), Trainer.predict().
tunesmith runs its own loop with dynamic padding, length-grouped batches, validation every epoch and the
best checkpoint kept on validation macro-F1. Precision: what tunesmith's `train.precision: auto` picks here
(bf16 autocast on a CPU with native bf16), given to the Trainer as `bf16=True, use_cpu=True` too. The useful
FLOP/s (bench/machine.py) is printed beside a matmul peak measured in the same run. Each side runs in its own child process, so peak RSS is its
own; the training time of tunesmith includes its per-epoch validation and checkpoints.

    python bench/classification.py [--seeds 1 2 3] [--epochs 3] [--train FILE --validation FILE --test FILE]

Test macro-F1 moves by about +-0.015 between seeds on 400 test examples, so both sides run with every seed
and the summary compares means. Last line: `speedup X.XX memory X.XX f1_delta +X.XXX` (tunesmith / baseline
mean samples/s, tunesmith / baseline highest peak RSS, tunesmith - baseline mean test macro-F1).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
from pathlib import Path

from apart import in_child

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "debian-sections"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tunesmith(args: dict, out: mp.Queue) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(
            {
                "model": {"name": "minilm", "max_length": 128},
                "data": {"train": args["train"], "validation": args["validation"], "test": args["test"]},
                "method": {"name": "lora", **args["lora"]},
                "train": {
                    "epochs": args["epochs"],
                    "batch_size": 16,
                    "learning_rate": args["lr"],
                    "seed": args["seed"],
                    "warmup_ratio": 0.0,
                    "weight_decay": 0.0,
                    "early_stopping_patience": None,
                    "precision": args["precision"],
                },
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        result = finetune(cfg, Console(file=io.StringIO()))
        samples = result.summary["examples"]["train"] * args["epochs"]
        out.put(
            {
                "samples_per_second": samples / result.summary["train_seconds"],
                "train_seconds": result.summary["train_seconds"],
                "macro_f1": result.evaluation["tuned"]["macro_f1"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )


def run_baseline(args: dict, out: mp.Queue) -> None:
    from hf_recipe import train_and_test

    files = {"train": args["train"], "test": args["test"]}
    result = train_and_test(
        files, args["lora"], args["epochs"], args["lr"], args["seed"], expert=False, bf16=args["bf16"]
    )
    out.put({**result, "peak_rss_mb": peak_rss_mb()})


def encoder_flops(train: str) -> float:
    """Useful FLOPs of one epoch of LoRA on MiniLM over the training texts (bench/machine.py's accounting: the
    encoder's linear layers and its full, non-causal attention; no padding)."""
    import csv

    from machine import linear_weights, training_flops
    from transformers import AutoModel, AutoTokenizer

    from tunesmith.models.catalog import resolve_model

    source = resolve_model("minilm").source
    with open(train, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    lengths = [
        len(ids)
        for ids in AutoTokenizer.from_pretrained(source)(texts, truncation=True, max_length=128)["input_ids"]
    ]
    model = AutoModel.from_pretrained(source)
    c = model.config
    return training_flops(
        lengths, linear_weights(model), c.hidden_size, c.num_hidden_layers, frozen_base=True, causal=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train", default=str(DATA / "train.csv"))
    parser.add_argument("--validation", default=str(DATA / "validation.csv"))
    parser.add_argument("--test", default=str(DATA / "test.csv"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="both sides'")
    parser.add_argument("--json", type=Path, help="also write the results here")
    a = parser.parse_args()
    import statistics

    import torch
    from machine import describe, matmul_peak, write_results

    from tunesmith.hardware import cpu_features
    from tunesmith.training.setup import mixed_precision

    bf16 = mixed_precision(a.precision, torch.device("cpu")) == "bf16"
    flops = a.epochs * encoder_flops(a.train)
    peak = matmul_peak("bfloat16" if bf16 else "float32")
    print(
        f"CPU: {cpu_features().describe()}; {'bf16 autocast' if bf16 else 'fp32'} on both sides; matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s (measured now); useful work {flops / 1e12:.2f} TFLOP"
    )
    print(
        f"minilm + LoRA r=16, {a.epochs} epochs, lr {a.lr}, batch 16, torch threads {torch.get_num_threads()}, "
        f"seeds {a.seeds}",
        flush=True,
    )
    sides = {"baseline (HF Trainer + PEFT)": run_baseline, "tunesmith": run_tunesmith}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    print(f"{'':30} {'seed':>4} {'samples/s':>10} {'train s':>9} {'peak RSS MB':>12} {'test macro-F1':>14}")
    for seed in a.seeds:
        args = {
            "epochs": a.epochs,
            "lr": a.lr,
            "train": a.train,
            "validation": a.validation,
            "test": a.test,
            "seed": seed,
            "lora": {"rank": 16, "alpha": 32, "dropout": 0.1},
            "precision": a.precision,
            "bf16": bf16,
        }
        for name, fn in sides.items():
            r = in_child(fn, args)
            runs[name].append(r)
            print(
                f"{name:30} {seed:4d} {r['samples_per_second']:10.1f} {r['train_seconds']:9.1f} "
                f"{r['peak_rss_mb']:12.0f} {r['macro_f1']:14.3f}",
                flush=True,
            )
    summary = {}
    for name, rs in runs.items():
        f1 = [r["macro_f1"] for r in rs]
        summary[name] = {
            "samples_per_second": statistics.mean(r["samples_per_second"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "macro_f1": statistics.mean(f1),
            "macro_f1_std": statistics.stdev(f1) if len(f1) > 1 else 0.0,
            "useful_flops_per_second": flops / statistics.mean(r["train_seconds"] for r in rs),
        }
        s = summary[name]
        print(
            f"{name:30} mean {s['samples_per_second']:10.1f} {'':9} {s['peak_rss_mb']:12.0f} "
            f"{s['macro_f1']:8.3f} +- {s['macro_f1_std']:.3f}  {describe(s['useful_flops_per_second'], peak)}"
        )
    if a.json:
        write_results(a.json, runs, summary, bf16=bf16, peak=peak, flops=flops)
    base, ours = summary["baseline (HF Trainer + PEFT)"], summary["tunesmith"]
    speedup = ours["samples_per_second"] / base["samples_per_second"]
    memory = ours["peak_rss_mb"] / base["peak_rss_mb"]
    print(f"speedup {speedup:.2f} memory {memory:.2f} f1_delta {ours['macro_f1'] - base['macro_f1']:+.3f}")


if __name__ == "__main__":
    sys.exit(main())
