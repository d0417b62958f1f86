"""Every method on the same data: trainable parameters, samples/s, peak memory and the final task metric.

classification: the demo (MiniLM, data/debian-sections, 1,600 examples, 8 classes), batch 16,
max_length 64, 3 epochs, test macro-F1 on 400 examples.
chat: SmolLM2-135M-Instruct on data/debian-chat (the first --train-examples of its 320 chats), batch 8,
max_length 256, 1 epoch, packed; validation loss on its 40 validation chats picks the best checkpoint;
test ROUGE-L of greedy answers (64 new tokens) to the first 16 test chats, and the test loss.

Each method runs with its own defaults (its parameters and its default learning rate; `tunesmith plan`
shows the same methods) in its own child process, so peak RSS (ru_maxrss: the whole run, evaluation
included) is its own. The planner's estimate of that peak is shown next to it. samples/s counts training
steps only (forward, backward, update; no validation).

    python bench/methods.py --task classification|chat [--methods lora full ...] [--epochs N]

Writes bench/results/methods-TASK.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
from pathlib import Path

from tunesmith.processes import ChildDied, run_apart

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
ALL = [
    "full",
    "freeze",
    "lora",
    "dora",
    "adalora",
    "loha",
    "lokr",
    "ia3",
    "adapter",
    "prompt",
    "prefix",
    "qlora",
]


def tree(task: str, method: str, epochs: int | None, train_examples: int, tmp: Path) -> dict:
    if task == "classification":
        data = ROOT / "data" / "debian-sections"
        return {
            "model": {"name": "minilm", "max_length": 64},
            "data": {s: str(data / f"{s}.csv") for s in ("train", "validation", "test")},
            "method": {"name": method},
            "train": {
                "epochs": epochs or 3,
                "batch_size": 16,
                "metric": "macro_f1",
                "early_stopping_patience": None,
            },
            "output_dir": str(tmp / "run"),
        }
    data = ROOT / "data" / "debian-chat"
    test, train = tmp / "test.jsonl", tmp / "train.jsonl"
    test.write_text("".join((data / "test.jsonl").read_text().splitlines(keepends=True)[:16]))
    train.write_text("".join((data / "train.jsonl").read_text().splitlines(keepends=True)[:train_examples]))
    return {
        "task": {"name": "chat", "eval_generate_examples": 4, "generation": {"max_new_tokens": 64}},
        "model": {"name": "smollm2-135m-instruct", "max_length": 256},
        "data": {
            "train": str(train),
            "validation": str(data / "validation.jsonl"),
            "test": str(test),
        },
        "method": {"name": method},
        "train": {
            "epochs": epochs or 1,
            "batch_size": 8,
            "metric": "loss",
            "early_stopping_patience": None,
            "estimate": "always",  # the table shows the planner's estimate next to the measured peak
        },
        "output_dir": str(tmp / "run"),
    }


def child(task: str, method: str, epochs: int | None, train_examples: int, queue: mp.Queue) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.quiet import quiet_libraries
    from tunesmith.recipes.finetune import finetune

    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(tree(task, method, epochs, train_examples, Path(tmp)))
        result = finetune(cfg, Console(file=io.StringIO()))
        s, tuned = result.summary, result.evaluation["tuned"]
        samples = s["examples"]["train"] * cfg.train.epochs
        queue.put(
            {
                "method": method,
                "learning_rate": cfg.train.learning_rate,
                "trainable": s["trainable_parameters"],
                "total": s["total_parameters"],
                "samples_per_second": samples / s["train_step_seconds"],
                "train_seconds": s["train_seconds"],
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "estimated_peak_mib": s["estimate"]["peak_bytes"] / MIB,
                "metric": tuned.get("macro_f1", tuned.get("rougeL")),
                "loss": tuned.get("loss"),
                "base_metric": (result.evaluation.get("base") or {}).get(
                    "macro_f1", (result.evaluation.get("base") or {}).get("rougeL")
                ),
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["classification", "chat"], default="classification")
    parser.add_argument("--methods", nargs="+", default=ALL)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-examples", type=int, default=320, help="chat: the first N training chats")
    args = parser.parse_args()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"methods-{args.task}.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for method in args.methods:
        if args.task == "classification" and method == "prefix":
            continue  # encoders take no prefix (refused before any model loads)
        try:
            row = run_apart(child, args.task, method, args.epochs, args.train_examples)
        except ChildDied as exc:
            raise SystemExit(f"the {method} run: {exc}") from None
        rows = [r for r in rows if r["method"] != method] + [row]
        path.write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(row), flush=True)
    metric = "test macro-F1" if args.task == "classification" else "test ROUGE-L"
    print(
        f"\n| method | learning rate | trainable parameters | samples/s | peak RSS (planner's estimate) | {metric} |"
    )
    print("|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: ALL.index(r["method"])):
        share = 100 * r["trainable"] / r["total"]
        extra = f", loss {r['loss']:.3f}" if r.get("loss") is not None and args.task == "chat" else ""
        print(
            f"| `{r['method']}` | {r['learning_rate']:g} | {r['trainable']:,} ({share:.2f}%) | "
            f"{r['samples_per_second']:.1f} | {r['peak_rss_mib']:,.0f} MiB ({r['estimated_peak_mib']:,.0f}) | "
            f"{r['metric']:.3f}{extra} |"
        )


if __name__ == "__main__":
    main()
