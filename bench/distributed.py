"""Two processes: tunesmith (`--nproc 2`, DDP and FSDP) vs the plain Hugging Face Trainer + PEFT recipe launched
with torchrun, on the same model, data, LoRA settings and effective batch.

The baseline is the recipe the accelerate docs teach: `torchrun --nproc-per-node 2 train.py`, where the
Trainer wraps the model in DDP and splits the data with a DistributedSampler; per-device batch 8 on 2
processes is a batch of 16. tunesmith runs batch 8 x accumulation 2, dealt to the 2 processes (the same 16
examples per step). Both train 1 epoch with no evaluation on the baseline's side; tunesmith's time includes
its end-of-epoch validation and checkpoint, as in bench/classification.py.

    python bench/distributed.py [--epochs 1] [--json FILE]

Memory is the largest peak resident set of any process of the run (getrusage of the children): on the CPU
every process loads the whole model before FSDP cuts it, so it shows no sharding gain here. Last line:
`ddp_speed X.XX fsdp_speed X.XX` (tunesmith / baseline samples/s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "debian-sections"
LORA = {"rank": 16, "alpha": 32, "dropout": 0.1}


def baseline_child(args: argparse.Namespace) -> None:
    """One process of the baseline, started by torchrun."""
    from hf_recipe import baseline_data_and_model
    from transformers import Trainer, TrainingArguments

    data, model, _ = baseline_data_and_model({"train": args.train}, LORA)
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=8,
            learning_rate=args.lr,
            report_to=[],
            seed=1,
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            ddp_backend="gloo",
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=data["train"])
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    if int(os.environ["RANK"]) == 0:
        Path(args.out).write_text(json.dumps({"train_seconds": seconds, "examples": len(data["train"])}))


MEASURED = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def run(command: list[str]) -> tuple[float, float]:
    """Run `command` under a fresh parent; (wall seconds, largest peak RSS in MB of any process it started)."""
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", MEASURED, *command], capture_output=True, text=True, env=env)
    rss, code = proc.stdout.split()[-2:]
    if proc.returncode or int(code):
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started, int(rss) / 1024


def baseline(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "baseline.json"
        me = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__]
        wall, rss = run(
            [*me, "--child", "--out", str(out), "--train", args.train, "--epochs", str(args.epochs)]
        )
        result = json.loads(out.read_text())
    samples = result["examples"] * args.epochs
    return {"samples_per_second": samples / result["train_seconds"], "wall_seconds": wall, "peak_rss_mb": rss}


def tunesmith(args: argparse.Namespace, strategy: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        files = ["--data", args.train, "--validation", args.validation, "--test", args.test]
        settings = [
            f"train.epochs={args.epochs}",
            "train.batch_size=8",
            "train.gradient_accumulation=2",
            f"train.learning_rate={args.lr}",
            "train.warmup_ratio=0",
            "train.weight_decay=0",
            "train.seed=1",
            "evaluation.forgetting=false",
            "evaluation.bootstrap_resamples=0",
            f"distributed.strategy={strategy}",
            *(f"method.{k}={v}" for k, v in LORA.items()),
        ]
        command = [
            sys.executable,
            "-m",
            "tunesmith",
            "train",
            "--model",
            "minilm",
            "--method",
            "lora",
            *files,
        ]
        wall, rss = run([*command, "--out", f"{tmp}/run", "--nproc", "2", *settings])
        summary = json.loads((Path(tmp) / "run" / "run.json").read_text())
    samples = summary["examples"]["train"] * args.epochs
    return {
        "samples_per_second": samples / summary["train_seconds"],
        "wall_seconds": wall,
        "peak_rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train", default=str(DATA / "train.csv"))
    parser.add_argument("--validation", default=str(DATA / "validation.csv"))
    parser.add_argument("--test", default=str(DATA / "test.csv"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return baseline_child(args)
    print(
        f"minilm + LoRA r=16, 2 processes, batch 16 per step, {args.epochs} epoch(s), lr {args.lr}",
        flush=True,
    )
    print(f"{'':32} {'samples/s':>10} {'wall s':>8} {'peak RSS MB':>12}")
    results = {}
    for name, measure in (
        ("baseline (HF Trainer + torchrun)", lambda: baseline(args)),
        ("tunesmith --nproc 2 (ddp)", lambda: tunesmith(args, "ddp")),
        ("tunesmith --nproc 2 (fsdp)", lambda: tunesmith(args, "fsdp")),
    ):
        r = results[name] = measure()
        print(
            f"{name:32} {r['samples_per_second']:10.1f} {r['wall_seconds']:8.1f} {r['peak_rss_mb']:12.0f}",
            flush=True,
        )
    base = results["baseline (HF Trainer + torchrun)"]["samples_per_second"]
    ddp = results["tunesmith --nproc 2 (ddp)"]["samples_per_second"] / base
    fsdp = results["tunesmith --nproc 2 (fsdp)"]["samples_per_second"] / base
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": results, "ddp_speed": ddp, "fsdp_speed": fsdp}, indent=2))
    print(f"ddp_speed {ddp:.2f} fsdp_speed {fsdp:.2f}")


if __name__ == "__main__":
    main()
