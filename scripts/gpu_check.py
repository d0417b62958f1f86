"""`make gpu-check`: tunesmith's GPU path run for real, in one script, under 10 minutes on one GPU.

On the machine's CUDA GPU it trains Gemma-3-270M (the packaged `gemma3-270m`) for chat on data/debian-chat:
- LoRA in bf16 autocast (train.precision auto picks it where the GPU supports bf16), then QLoRA with
  bitsandbytes' 4-bit kernels (skipped, said so, where bitsandbytes is not installed);
- where there are 2 or more GPUs, LoRA again with DDP, one process per GPU (`--nproc N`, NCCL);
then exports the LoRA run (merged transformers model; GGUF where llama.cpp's Python binding is installed),
serves it (`tunesmith serve`, on the GPU) and asks it one chat completion over HTTP.

For every training run it prints tokens/s, the CUDA allocator's peak memory and the planner's estimate
of the peak beside it (estimate / measured), and the GPU's bf16 matmul peak measured now. A stage that
fails prints FAIL with the end of its output and the script goes on; the exit code is the number of
stages that failed. Results also go to --json (default: $OUT/gpu-check.json where $OUT is set).

    python scripts/gpu_check.py [--examples 320] [--work /tmp/gpu-check] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "debian-chat"
MODEL = "gemma3-270m"
TUNESMITH = [sys.executable, "-m", "tunesmith"]


def run(cmd: list[str], timeout: float) -> tuple[bool, str, float]:
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        return False, f"timed out after {timeout:.0f} s\n{e.stdout or ''}{e.stderr or ''}", timeout
    return done.returncode == 0, done.stdout + done.stderr, time.perf_counter() - started


def train(name: str, work: Path, examples: int, method: str, extra: list[str], device: str) -> dict:
    out = work / name
    held_out = 40 if device == "cuda" else 8  # on a CPU (a check of this script) fewer chats to evaluate
    for split, count in (("train", examples), ("validation", held_out), ("test", held_out)):
        if not (work / f"{split}.jsonl").exists():
            lines = (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:count]
            (work / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [
        *TUNESMITH,
        "train",
        "--task",
        "chat",
        "--model",
        MODEL,
        "--data",
        str(work / "train.jsonl"),
        "--validation",
        str(work / "validation.jsonl"),
        "--test",
        str(work / "test.jsonl"),
        "--method",
        method,
        "--out",
        str(out),
        "--overwrite",
        "train.epochs=1",
        "train.batch_size=8",
        "train.estimate=always",
        "task.eval_generate_examples=8",
        f"train.device={device}",
        *([] if device == "cuda" else ["evaluation.forgetting=false"]),
        *extra,
    ]
    ok, text, seconds = run(cmd, timeout=240 if device == "cuda" else 1800)
    row = {"stage": name, "ok": ok, "seconds": round(seconds, 1)}
    if ok:
        summary = json.loads((out / "run.json").read_text())
        estimate = summary.get("estimate") or {}
        peak = summary.get("peak_memory_bytes")
        row |= {
            "device": summary.get("device"),
            "processes": summary.get("processes"),
            "tokens_per_second": summary.get("train_tokens_per_second"),
            "peak_memory_bytes": peak,
            "peak_memory_of": summary.get("peak_memory_of"),
            "estimated_peak_bytes": estimate.get("peak_bytes") or estimate.get("peak_bytes_at_least"),
            "run": str(out),
        }
    else:
        row["error"] = text[-3000:]
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_once(run_folder: str, device: str) -> dict:
    port = free_port()
    cmd = [*TUNESMITH, "serve", run_folder, "--port", str(port), "--no-auth", "--device", device]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    row: dict = {"stage": "serve", "ok": False}
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        with urllib.request.urlopen(f"{base}/v1/models", timeout=10) as r:
            model = json.loads(r.read())["data"][0]["id"]
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "What is the apt package manager?"}],
            "max_tokens": 64,
            "temperature": 0,
        }
        request = urllib.request.Request(
            f"{base}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as r:
            answer = json.loads(r.read())
        seconds = time.perf_counter() - started
        tokens = answer["usage"]["completion_tokens"]
        row |= {
            "ok": bool(answer["choices"][0]["message"]["content"]),
            "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 1),
            "answer": answer["choices"][0]["message"]["content"][:200],
        }
    except (OSError, KeyError, ValueError) as e:
        row["error"] = repr(e)
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
        if not row["ok"]:
            row["error"] = f"{row.get('error', '')}\n{output[-3000:]}"
    return row


def export(run_folder: str, work: Path, fmt: str) -> dict:
    ok, text, seconds = run(
        [
            *TUNESMITH,
            "export",
            run_folder,
            "--format",
            fmt,
            "--out",
            str(work / f"export-{fmt}"),
            "--overwrite",
        ],
        timeout=300,
    )
    row = {"stage": f"export {fmt}", "ok": ok, "seconds": round(seconds, 1)}
    if not ok:
        row["error"] = text[-3000:]
    return row


def machine_facts(device: str) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from machine import matmul_peak

    if device == "cpu":
        peak = matmul_peak("bfloat16")
        return {
            "gpu": "none (CPU)",
            "gpus": 0,
            "memory_bytes": 0,
            "capability": "-",
            "bf16": None,
            "bf16_matmul_peak_flops": peak,
            "torch": torch.__version__,
            "cuda": None,
        }
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpus": torch.cuda.device_count(),
        "memory_bytes": props.total_memory,
        "capability": f"{props.major}.{props.minor}",
        "bf16": torch.cuda.is_bf16_supported(),
        "bf16_matmul_peak_flops": matmul_peak("bfloat16", n=8192, seconds=2.0, device="cuda"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def print_table(facts: dict, rows: list[dict]) -> None:
    gib = 1024**3
    print(
        f"\nGPU: {facts['gpu']} x{facts['gpus']} (compute {facts['capability']}, "
        f"{facts['memory_bytes'] / gib:.0f} GiB, bf16 {facts['bf16']}); torch {facts['torch']}, CUDA "
        f"{facts['cuda']}; bf16 matmul peak {facts['bf16_matmul_peak_flops'] / 1e12:.0f} TFLOP/s (measured now)"
    )
    print(
        f"{'stage':16} {'ok':4} {'s':>7} {'tokens/s':>9} {'peak GiB':>9} {'estimate GiB':>13} {'est/peak':>9}"
    )
    for r in rows:
        peak, est = r.get("peak_memory_bytes"), r.get("estimated_peak_bytes")
        print(
            f"{r['stage']:16} {'ok' if r['ok'] else 'FAIL':4} {r.get('seconds', 0):7.1f} "
            f"{r.get('tokens_per_second') or 0:9.0f} {(peak or 0) / gib:9.2f} {(est or 0) / gib:13.2f} "
            f"{(est / peak if peak and est else 0):9.2f}"
        )
    for r in rows:
        if not r["ok"]:
            print(f"\n--- {r['stage']} FAILED:\n{r.get('error', '')}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=320, help="training chats")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-check"))
    default_json = Path(os.environ["OUT"]) / "gpu-check.json" if os.environ.get("OUT") else None
    parser.add_argument("--json", type=Path, default=default_json)
    parser.add_argument(
        "--cpu", action="store_true", help="the same stages on the CPU: a check of this script"
    )
    a = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not a.cpu:
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check")
        return 1
    device = "cpu" if a.cpu else "cuda"
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    facts = machine_facts(device)
    rows = [train("lora bf16", a.work, a.examples, "lora", [], device)]
    print(json.dumps(rows[-1]), flush=True)
    if importlib.util.find_spec("bitsandbytes") is not None:
        rows.append(train("qlora 4-bit", a.work, a.examples, "qlora", [], device))
    else:
        rows.append({"stage": "qlora 4-bit", "ok": False, "error": "bitsandbytes is not installed: skipped"})
    print(json.dumps(rows[-1]), flush=True)
    if facts["gpus"] >= 2:
        rows.append(
            train(
                f"lora ddp x{facts['gpus']}", a.work, a.examples, "lora", [f"--nproc={facts['gpus']}"], device
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    lora = rows[0].get("run")
    if lora:
        rows.append(export(lora, a.work, "merged"))
        if importlib.util.find_spec("llama_cpp") is not None:
            rows.append(export(lora, a.work, "gguf"))
        rows.append(serve_once(lora, device))
    print_table(facts, rows)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": facts, "stages": rows}, indent=2))
    return sum(not r["ok"] for r in rows)


if __name__ == "__main__":
    sys.exit(main())
