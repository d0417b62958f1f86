"""`tunesmith serve` for a chat run: the torch engine against `--engine llama.cpp` (f16 and q8_0), over HTTP.

A SmolLM2-135M-Instruct LoRA chat run (tunesmith's defaults, 1 epoch on data/debian-chat; or `--run RUN`) is
served by `tunesmith serve` in a child process, once per engine. The first start with llama.cpp exports and
checks the GGUF (timed: `first start`); every engine is then started again, timed (`start`: what a restart
costs once the export is kept). The official OpenAI client then sends the 40 validation chats one at a time
(a single user: both engines answer one chat at a time), streamed, greedy (temperature 0), up to 64 new
tokens, after two warm-up requests. The engines alternate, `--repeats` times each.

Per engine, medians over repeats: completion tokens per second (the answers' tokens over the seconds from
sending each request to its last chunk), time to the first token (p50), whole-answer latency (p50), and the
server process's peak resident memory (VmHWM, the whole run). Also how many answers equal the torch
engine's word for word.

    python bench/serve_engines.py [--run RUN] [--repeats 2] [--json FILE]

Last line: `f16_speed X.XX q8_0_speed X.XX` (tokens/s over the torch engine's).
"""

from __future__ import annotations

import argparse
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

from gguf_engines import train_run, validation_chats

NEW_TOKENS = 64
ENGINES = [("torch", None), ("llama.cpp", "f16"), ("llama.cpp", "q8_0")]


def start(run: Path, engine: str, quant: str | None, log: Path) -> tuple[subprocess.Popen, str, float]:
    """The server, its URL, and the seconds from launch to listening."""
    flags = ["--engine", engine] + (["--quant", quant] if quant else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    began = time.perf_counter()
    handle = log.open("w")
    cmd = [sys.executable, "-m", "tunesmith", "serve", f"bot={run}", "--port", "0", "--no-auth", *flags]
    process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, text=True)
    while not (found := re.search(r"listening on (http://[\d.]+:\d+)", log.read_text())):
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        time.sleep(0.1)
    return process, found.group(1), time.perf_counter() - began


def peak_mib(process: subprocess.Popen) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def drive(url: str, chats: list) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="none")
    for chat in chats[:2]:  # warm-up
        client.chat.completions.create(model="bot", messages=chat, temperature=0, max_tokens=8)
    tokens, seconds, first, whole, texts = 0, 0.0, [], [], []
    for chat in chats:
        began = time.perf_counter()
        stream = client.chat.completions.create(
            model="bot",
            messages=chat,
            temperature=0,
            max_tokens=NEW_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, first_at = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first_at = first_at or time.perf_counter()
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                tokens += chunk.usage.completion_tokens
        done = time.perf_counter()
        seconds += done - began
        first.append(((first_at or done) - began) * 1000)
        whole.append((done - began) * 1000)
        texts.append("".join(pieces).strip())
    return {
        "tokens_per_second": tokens / seconds,
        "first_token_ms_p50": statistics.median(first),
        "latency_ms_p50": statistics.median(whole),
        "texts": texts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="A chat run to serve (default: train one)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="serve-engines-"))
    run = args.run or train_run(tmp)
    chats = [m[:-1] if m[-1]["role"] == "assistant" else m for m in validation_chats()]  # the questions
    names = [engine if quant is None else f"{engine} {quant}" for engine, quant in ENGINES]
    results: dict[str, dict] = {name: {"passes": []} for name in names}
    for name, (engine, quant) in zip(names, ENGINES, strict=True):
        if engine != "torch":  # the first start exports and checks the GGUF
            process, _, seconds = start(run, engine, quant, tmp / "first.log")
            stop(process)
            results[name]["first_start_s"] = seconds
    for _ in range(args.repeats):
        for name, (engine, quant) in zip(names, ENGINES, strict=True):
            process, url, seconds = start(run, engine, quant, tmp / "server.log")
            try:
                measured = drive(url, chats)
                measured["peak_mib"] = peak_mib(process)
            finally:
                stop(process)
            measured["start_s"] = seconds
            results[name]["passes"].append(measured)
            print(f"{name:15s} {measured['tokens_per_second']:6.1f} tok/s", flush=True)
    reference = results["torch"]["passes"][0]["texts"]
    summary = {}
    print(
        "\n| engine | first start s | start s | tokens/s | first token p50 ms | answer p50 ms | peak RSS | same answers as torch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        passes = results[name]["passes"]
        row = {k: statistics.median(p[k] for p in passes) for k in passes[0] if k != "texts"}
        row["same_as_torch"] = sum(a == b for a, b in zip(passes[0]["texts"], reference, strict=True))
        row["first_start_s"] = results[name].get("first_start_s")
        summary[name] = row
        first = f"{row['first_start_s']:.1f}" if row["first_start_s"] else "-"
        print(
            f"| {name} | {first} | {row['start_s']:.1f} | {row['tokens_per_second']:.1f} | "
            f"{row['first_token_ms_p50']:.0f} | {row['latency_ms_p50']:.0f} | {row['peak_mib']:,.0f} MiB | "
            f"{row['same_as_torch']} / {len(chats)} |"
        )
    speed = {n: summary[n]["tokens_per_second"] / summary["torch"]["tokens_per_second"] for n in names[1:]}
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "engines": summary}, indent=2) + "\n")
    print(f"\nf16_speed {speed['llama.cpp f16']:.2f} q8_0_speed {speed['llama.cpp q8_0']:.2f}")


if __name__ == "__main__":
    main()
