"""Serving throughput and latency of /v1/classify, with and without dynamic batching.

A LoRA MiniLM classifier (the demo run if `--run` is given, else one trained here for 1 epoch on the demo
data) is served by `tunesmith serve` in a child process, twice: `--batch-size 32` (dynamic batching) and
`--batch-size 1` (one text per forward pass, what a plain endpoint around a pipeline does). Each time, an
httpx client keeps CONCURRENCY requests in flight (one text each, texts from the demo test split) until
REQUESTS have been answered, after a warm-up.

    python bench/serve.py [--run runs/demo] [--requests 400] [--concurrency 1 8 32] [--repeats 3]

The two modes alternate, `--repeats` times each (client and server share the machine's cores, so one pass
is noisy). Prints one line per (mode, concurrency): the median over repeats of requests/s, p50 and p95
latency in ms; then the ratio of batched to unbatched requests/s at each concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789abcdef"


def train_run(folder: Path) -> Path:
    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    tree = {
        "model": {"name": "minilm"},
        "data": {
            k: str(ROOT / "data" / "debian-sections" / f"{k}.csv") for k in ("train", "validation", "test")
        },
        "method": {"name": "lora"},
        "train": {"epochs": 1},
        "evaluation": {"forgetting": False, "bootstrap_resamples": 0},
        "output_dir": str(folder / "run"),
    }
    finetune(build_config(tree), Console(file=io.StringIO()))
    return folder / "run"


def texts() -> list[str]:
    with (ROOT / "data" / "debian-sections" / "test.csv").open(encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def start(run: Path, folder: Path, batch_size: int) -> tuple[subprocess.Popen, str]:
    keys = folder / "keys.txt"
    keys.write_text(KEY + "\n")
    log = folder / f"server-{batch_size}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunesmith",
            "serve",
            f"bench={run}",
            "--port",
            "0",
            "--api-key-file",
            str(keys),
            "--batch-size",
            str(batch_size),
            "--log-url",
            f"sqlite:///{folder / f'log-{batch_size}.db'}",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    for _ in range(600):
        found = re.search(r"listening on (http://[\d.]+:\d+)", log.read_text())
        if found:
            url = found.group(1)
            for _ in range(100):
                try:
                    httpx.get(f"{url}/health", timeout=2)
                    return process, url
                except httpx.TransportError:
                    time.sleep(0.1)
        time.sleep(0.2)
    raise RuntimeError(log.read_text())


async def drive(url: str, pool: list[str], requests: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, limits=limits) as client:
        counter = iter(range(requests))

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                response = await client.post(
                    "/v1/classify", json={"model": "bench", "input": pool[i % len(pool)]}
                )
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="A classification run to serve (default: train one)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tunesmith-bench-serve-"))
    run = args.run or train_run(folder)
    pool = texts()
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for _ in range(args.repeats):
        for mode, batch_size in (("batched", 32), ("unbatched", 1)):
            process, url = start(run.resolve(), folder, batch_size)
            try:
                asyncio.run(drive(url, pool, 64, 8))  # warm-up
                for concurrency in args.concurrency:
                    seconds, latencies = asyncio.run(drive(url, pool, args.requests, concurrency))
                    p50 = statistics.median(latencies) * 1000
                    p95 = statistics.quantiles(latencies, n=20)[18] * 1000
                    results.setdefault((mode, concurrency), []).append((args.requests / seconds, p50, p95))
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    rates = {}
    for (mode, concurrency), passes in results.items():
        rate, p50, p95 = (statistics.median(values) for values in zip(*passes, strict=True))
        rates[(mode, concurrency)] = rate
        print(
            f"{mode:9} concurrency {concurrency:3}: {rate:7.1f} requests/s  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms",
            flush=True,
        )
    for concurrency in args.concurrency:
        ratio = rates[("batched", concurrency)] / rates[("unbatched", concurrency)]
        print(f"concurrency {concurrency:3}: batched / unbatched requests/s = {ratio:.2f}")


if __name__ == "__main__":
    main()
