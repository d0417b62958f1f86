"""Serving throughput and latency: /v1/classify with and without dynamic batching, and (`--chat`) chat
completions with and without continuous batching.

Classify: a LoRA MiniLM classifier (the demo run if `--run` is given, else one trained here for 1 epoch on
the demo data) is served by `tunesmith serve` in a child process, twice: `--batch-size 32` (dynamic batching)
and `--batch-size 1` (one text per forward pass, what a plain endpoint around a pipeline does). Each time, an
httpx client keeps CONCURRENCY requests in flight (one text each, texts from the demo test split) until
REQUESTS have been answered, after a warm-up.

Chat (`--chat`): a SmolLM2-135M LoRA chat run (`--run`, else the GGUF bench's run, trained here) is served
with the torch engine, `--batch-size 32` (concurrent chats decode together) and `--batch-size 1` (one chat at
a time, as the server did before continuous batching). The client keeps CONCURRENCY chats in flight, each a
validation chat of data/debian-chat without its answer, greedy, up to 64 new tokens, until REQUESTS are
answered; tokens/s is the answers' completion tokens over the wall time.

ONNX (`--onnx`): the classify bench with `--engine onnx` (the run's checked ONNX export, made at the first
start and kept) against `--engine torch`, both with dynamic batching.

    python bench/serve.py [--run runs/demo] [--requests 400] [--concurrency 1 8 32] [--repeats 3]
    python bench/serve.py --chat [--run RUN] [--requests 32] [--concurrency 1 8] [--repeats 2] [--json FILE]
    python bench/serve.py --onnx [--run RUN] [--requests 400] [--concurrency 1 8 32] [--json FILE]

The two modes alternate, `--repeats` times each (client and server share the machine's cores, so one pass
is noisy). Prints one line per (mode, concurrency): the median over repeats of requests/s (chat: also
tokens/s), p50 and p95 latency in ms; then the ratio of batched to unbatched at each concurrency. With
`--chat`, last line: `chat_speedup_C X.XX` for the largest concurrency C (batched tokens/s at C over batched
tokens/s at concurrency 1); with `--onnx`, `onnx_speedup_C X.XX` (ONNX over torch requests/s at C).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
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
NEW_TOKENS = 64
"""Most tokens of a benchmarked chat answer (as bench/serve_engines.py)."""


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


def start(run: Path, folder: Path, mode: str, flags: list[str]) -> tuple[subprocess.Popen, str]:
    keys = folder / "keys.txt"
    keys.write_text(KEY + "\n")
    log = folder / f"server-{mode}.log"
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
            "--log-url",
            f"sqlite:///{folder / f'log-{mode}.db'}",
            *flags,
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
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(log.read_text())


def classify_body(text: str) -> dict:
    return {"model": "bench", "input": text}


def chat_body(messages: list[dict[str, str]]) -> dict:
    return {"model": "bench", "messages": messages, "max_tokens": NEW_TOKENS, "temperature": 0}


async def drive(
    url: str, bodies: list[dict], requests: int, concurrency: int, path: str
) -> tuple[float, list[float], int]:
    """Keep `concurrency` requests in flight until `requests` are answered: the seconds it took, each
    request's latency and the completion tokens of the answers (chat)."""
    latencies: list[float] = []
    tokens = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as client:
        counter = iter(range(requests))

        async def worker() -> None:
            nonlocal tokens
            for i in counter:
                started = time.perf_counter()
                response = await client.post(path, json=bodies[i % len(bodies)])
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                tokens += response.json().get("usage", {}).get("completion_tokens", 0)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies, tokens


def measure(run: Path, folder: Path, args: argparse.Namespace, bodies: list[dict], path: str) -> dict:
    """Both modes, alternating, `args.repeats` times: per (mode, concurrency) the passes' numbers."""
    results: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    for _ in range(args.repeats):
        for mode, flags in modes(args).items():
            process, url = start(run.resolve(), folder, mode, flags)
            try:
                asyncio.run(drive(url, bodies, 16 if args.chat else 64, 8, path))  # warm-up
                for concurrency in args.concurrency:
                    seconds, latencies, tokens = asyncio.run(
                        drive(url, bodies, args.requests, concurrency, path)
                    )
                    p50 = statistics.median(latencies) * 1000
                    p95 = statistics.quantiles(latencies, n=20)[18] * 1000
                    rates = (args.requests / seconds, tokens / seconds, p50, p95)
                    results.setdefault((mode, concurrency), []).append(rates)
                    print(f"  {mode} concurrency {concurrency}: {rates}", flush=True)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    return results


def modes(args: argparse.Namespace) -> dict[str, list[str]]:
    """The server's two configurations compared, by name: the first is the one measured for."""
    if args.onnx:
        return {"onnx": ["--engine", "onnx"], "torch": ["--engine", "torch"]}
    return {"batched": ["--batch-size", "32"], "unbatched": ["--batch-size", "1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="The run to serve (default: train one)")
    parser.add_argument("--chat", action="store_true", help="Chat completions instead of /v1/classify")
    parser.add_argument("--onnx", action="store_true", help="Classify: --engine onnx against torch")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--concurrency", type=int, nargs="+")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.requests = args.requests or (32 if args.chat else 400)
    args.concurrency = args.concurrency or ([1, 8] if args.chat else [1, 8, 32])
    args.repeats = args.repeats or (2 if args.chat else 3)
    folder = Path(tempfile.mkdtemp(prefix="tunesmith-bench-serve-"))
    if args.chat:
        from gguf_engines import train_run as train_chat_run
        from gguf_engines import validation_chats

        run = args.run or train_chat_run(folder)
        questions = [chat[:-1] for chat in validation_chats()]  # each chat without its answer
        bodies, path = [chat_body(m) for m in questions], "/v1/chat/completions"
    else:
        run = args.run or train_run(folder)
        bodies, path = [classify_body(t) for t in texts()], "/v1/classify"
    results = measure(run, folder, args, bodies, path)
    summary = report(results, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"run": str(run), "json": str(args.json)},
                    "passes": {f"{m} {c}": v for (m, c), v in results.items()},
                    "summary": summary,
                },
                indent=2,
            )
            + "\n"
        )


def report(results: dict, args: argparse.Namespace) -> dict:
    rates = {}
    for (mode, concurrency), passes in results.items():
        rate, tokens, p50, p95 = (statistics.median(values) for values in zip(*passes, strict=True))
        rates[(mode, concurrency)] = tokens if args.chat else rate
        chat = f"  {tokens:7.1f} tokens/s" if args.chat else ""
        print(
            f"{mode:9} concurrency {concurrency:3}: {rate:7.1f} requests/s{chat}  p50 {p50:7.1f} ms  "
            f"p95 {p95:7.1f} ms",
            flush=True,
        )
    summary = {}
    first, second = modes(args)
    for concurrency in args.concurrency:
        ratio = rates[(first, concurrency)] / rates[(second, concurrency)]
        summary[f"{first}_over_{second}_{concurrency}"] = ratio
        print(
            f"concurrency {concurrency:3}: {first} / {second} {'tokens' if args.chat else 'requests'}/s = {ratio:.2f}"
        )
    if args.chat:
        top = max(args.concurrency)
        summary[f"chat_speedup_{top}"] = rates[("batched", top)] / rates[("batched", min(args.concurrency))]
        print(f"chat_speedup_{top} {summary[f'chat_speedup_{top}']:.2f}")
    if args.onnx:
        top = max(args.concurrency)
        print(f"onnx_speedup_{top} {summary[f'onnx_over_torch_{top}']:.2f}")
    return summary


if __name__ == "__main__":
    main()
