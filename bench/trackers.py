"""What the trackers cost: the demo trained with and without `train.report_to=[tensorboard,mlflow]`.

Each run is `tunesmith train -c configs/demo.yaml` in its own process, as a user runs it, one after another on
the same machine; per seed the two arms alternate which goes first, so a machine that slows down over the
benchmark costs both alike. MLflow logs to a local SQLite store beside the runs (the default). Compared:
training samples/s as run.json records it (the training loop's samples over its wall time, validations
included), the time inside optimizer steps, and the whole command's wall time (the trackers also upload the
run's files and the report at the end).

    python bench/trackers.py [--seeds 1 2 3] [--epochs N] [--json bench/results/trackers.json]

Also compared: the CPU seconds of the whole command (user + system), which a shared machine's neighbours
disturb less than wall time. Last line: `trackers cost X.X% samples_per_second (mean over N seeds, median
Y.Y%; spread ±Z.Z%)`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"off": [], "tensorboard+mlflow": ["train.report_to=[tensorboard,mlflow]"]}


def train(out: Path, seed: int, extra: list[str]) -> dict:
    command = [
        sys.executable,
        "-m",
        "tunesmith",
        "train",
        "-c",
        str(ROOT / "configs/demo.yaml"),
        "--out",
        str(out),
    ]
    command += [f"train.seed={seed}", *extra]
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "run.json").read_text())
    sent = (
        json.loads((out / "trackers.json").read_text())["worker"] if (out / "trackers.json").is_file() else {}
    )
    during = (sent.get("cpu_seconds") or {}).get("metrics_many", 0.0)
    return {
        "samples_per_second": summary["train_samples_per_second"],
        "step_seconds": summary["train_step_seconds"],
        "train_seconds": summary["train_seconds"],
        "optimizer_steps": summary["optimizer_steps"],
        "command_seconds": round(wall, 2),
        "command_cpu_seconds": round(cpu, 2),
        "tracker_warnings": proc.stdout.count("tracker ") + proc.stderr.count("tracker "),
        "tracker_thread_cpu_seconds": sent.get("cpu_seconds", {}),
        "tracker_cpu_share_while_training": round(during / summary["train_seconds"], 5),
    }


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, help="train.epochs for both arms (default: the demo's 5)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    common = [f"train.epochs={args.epochs}"] if args.epochs else []
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="bench-trackers-") as tmp:
        for i, seed in enumerate(args.seeds):
            order = list(ARMS) if i % 2 == 0 else list(reversed(ARMS))
            for arm in order:
                record = train(Path(tmp) / f"{arm}-{seed}", seed, [*common, *ARMS[arm]])
                results[arm].append({"seed": seed, **record})
                print(f"seed {seed} {arm}: {record}", flush=True)
    on, off = results["tensorboard+mlflow"], results["off"]
    costs = [
        100 * (1 - a["samples_per_second"] / b["samples_per_second"]) for a, b in zip(on, off, strict=True)
    ]
    cpu = [
        100 * (a["command_cpu_seconds"] / b["command_cpu_seconds"] - 1) for a, b in zip(on, off, strict=True)
    ]
    for arm, runs in results.items():
        print(
            f"{arm}: samples/s {spread([r['samples_per_second'] for r in runs])}, step seconds "
            f"{spread([r['step_seconds'] for r in runs])}, command seconds "
            f"{spread([r['command_seconds'] for r in runs])}, command CPU seconds "
            f"{spread([r['command_cpu_seconds'] for r in runs])}"
        )
    share = [100 * r["tracker_cpu_share_while_training"] for r in on]
    print(
        f"the tracker thread's CPU while the runs trained: {spread(share)}% of one core "
        "(its start is before the first step; its files after the last)"
    )
    print(
        f"CPU time of the whole command: {spread(cpu)}% more with the trackers (median {statistics.median(cpu):.1f}%)"
    )
    sd = statistics.stdev(costs) if len(costs) > 1 else 0.0
    line = (
        f"trackers cost {statistics.mean(costs):.1f}% samples_per_second "
        f"(mean over {len(costs)} seeds, median {statistics.median(costs):.1f}%; spread ±{sd:.1f}%)"
    )
    if args.json:
        record = {
            "command": "python bench/trackers.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.processor() or platform.machine()}, 2 cores",
            "runs": results,
            "cost_percent": costs,
            "cpu_cost_percent": cpu,
            "tracker_thread_percent_of_one_core_while_training": share,
            "summary": line,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(line)


if __name__ == "__main__":
    main()
