"""How close the planner's estimates come to what training then measures.

For each method, one child process runs `finetune` (the same code as `tunesmith train`), which prints and
stores the planner's estimate (run.json "estimate") before its first step. The child then reports what
actually happened: its peak resident memory over the whole run (ru_maxrss: training, validation, the base
model's baseline and the final evaluation included) and the seconds spent in optimizer steps per epoch.

    python bench/planner.py [--task classification|chat] [--methods full lora qlora prompt] [--epochs 1]

Last line: `worst memory_ratio X.XX time_ratio X.XX` (estimate / measured, the one furthest from 1).
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


def config_tree(task: str, method: str, epochs: int, out: Path) -> dict:
    if task == "classification":
        tree = {
            "model": {"name": "minilm", "max_length": 64},
            "data": {
                s: str(ROOT / "data" / "debian-sections" / f"{s}.csv")
                for s in ("train", "validation", "test")
            },
            "train": {"batch_size": 16},
        }
    else:
        chat = ROOT / "data" / "debian-chat"
        tree = {
            "task": {"name": "chat", "eval_generate_examples": 4, "generation": {"max_new_tokens": 32}},
            "model": {"name": "smollm2-135m-instruct", "max_length": 256},
            "data": {"train": str(chat / "train.jsonl"), "test": str(chat / "test.jsonl")},
            "train": {"batch_size": 8},
        }
    tree["method"] = {"name": method}
    # the estimate is what this benchmark measures, however short the run
    tree["train"].update(
        {"epochs": epochs, "early_stopping_patience": None, "threads": None, "estimate": "always"}
    )
    tree["output_dir"] = str(out)
    return tree


def child(task: str, method: str, epochs: int, queue: mp.Queue) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        result = finetune(
            build_config(config_tree(task, method, epochs, Path(tmp) / "run")), Console(file=io.StringIO())
        )
        summary = result.summary
    queue.put(
        {
            "estimate": summary["estimate"],
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "epoch_seconds": summary["train_step_seconds"] / epochs,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["classification", "chat"], default="classification")
    parser.add_argument("--methods", nargs="+", default=["full", "lora", "qlora", "prompt"])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"planner-{args.task}.json"
    earlier = json.loads(path.read_text()) if path.is_file() else []
    rows = []
    for method in args.methods:
        try:
            measured = run_apart(child, args.task, method, args.epochs)
        except ChildDied as exc:
            raise SystemExit(f"the {method} run: {exc}") from None
        e = measured["estimate"]
        rows.append(
            {
                "method": method,
                "estimated_peak_mib": e["peak_bytes"] / MIB,
                "measured_peak_mib": measured["peak_rss"] / MIB,
                "memory_ratio": e["peak_bytes"] / measured["peak_rss"],
                "estimated_epoch_s": e["epoch_seconds"],
                "measured_epoch_s": measured["epoch_seconds"],
                "time_ratio": e["epoch_seconds"] / measured["epoch_seconds"],
                "estimate": e,
            }
        )
        print(
            f"{method:8s} peak est {rows[-1]['estimated_peak_mib']:7.0f} MiB  measured "
            f"{rows[-1]['measured_peak_mib']:7.0f} MiB  ratio {rows[-1]['memory_ratio']:.2f}   "
            f"epoch est {e['epoch_seconds']:6.1f} s  measured {measured['epoch_seconds']:6.1f} s  "
            f"ratio {rows[-1]['time_ratio']:.2f}",
            flush=True,
        )
    # a method measured again replaces its earlier row; the others stay
    rows = [r for r in earlier if r["method"] not in args.methods] + rows
    path.write_text(json.dumps(rows, indent=2) + "\n")
    worst_memory = max((r["memory_ratio"] for r in rows), key=lambda r: abs(r - 1))
    worst_time = max((r["time_ratio"] for r in rows), key=lambda r: abs(r - 1))
    print(f"worst memory_ratio {worst_memory:.2f} time_ratio {worst_time:.2f}")


if __name__ == "__main__":
    main()
