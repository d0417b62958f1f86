"""How fast the studio answers: its pages with 200 runs in the folder, and how soon a line written to a
run's metrics.jsonl reaches a browser's event stream.

One real run is trained (the tiny demo slice, MiniLM LoRA, 1 epoch), then copied into 200 run folders
(`runs/team-K/run-N`, their config.yaml touched so they sort by date). `tunesmith studio` runs in its own
process on a free port; every page is fetched once to warm it, then timed over REPEATS requests (median,
p95). For the live curve, one run is made to look as if it trains (its lock file names this process), the
event stream is opened, and lines are appended to its metrics.jsonl one at a time: the delay from the write
to the line's arrival is timed.

    python bench/studio.py [--runs 200] [--json bench/results/studio.json]

Last line: `studio runs_page_ms X runs_page_p95_ms X run_page_ms X compare_ms X live_line_ms X (p95 X)`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 30
LINES = 20


def train_one(folder: Path) -> Path:
    data = folder / "data"
    data.mkdir()
    for split, n in (("train", 120), ("validation", 40), ("test", 40)):
        lines = (ROOT / "data/debian-sections" / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        (data / f"{split}.csv").write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    out = folder / "seed-run"
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
    command += [f"data.{s}={data / f'{s}.csv'}" for s in ("train", "validation", "test")]
    command += ["train.epochs=1", "evaluation.forgetting=false"]
    subprocess.run(command, check=True, capture_output=True)
    return out


def fill(root: Path, seed: Path, runs: int) -> list[str]:
    names = []
    for n in range(runs):
        name = f"team-{n % 10}/run-{n:03d}"
        target = root / name
        shutil.copytree(seed, target, ignore=shutil.ignore_patterns("checkpoints", "model", "*.safetensors"))
        os.utime(target / "config.yaml", (time.time() - n, time.time() - n))
        names.append(name)
    return names


def start_studio(root: Path) -> tuple[subprocess.Popen, str]:
    log = root.parent / "studio.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "studio", str(root), "--port", "0"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        found = re.search(r"http://[\d.]+:\d+/", log.read_text())
        if found:
            return process, found.group(0)
        time.sleep(0.1)
    raise SystemExit(log.read_text())


def timed(client: httpx.Client, path: str) -> list[float]:
    assert client.get(path).status_code == 200, path
    out = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path)
        out.append(1000 * (time.perf_counter() - started))
        assert response.status_code == 200
    return out


def live_delays(client: httpx.Client, root: Path, name: str) -> list[float]:
    """Write LINES lines to a 'running' run's log, one every 0.3 s; the delay until each arrives."""
    run = root / name
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "command": "bench", "since": "now"}) + "\n")
    written: dict[int, float] = {}
    arrived: dict[int, float] = {}
    base = len((run / "metrics.jsonl").read_text().splitlines())

    def write() -> None:
        time.sleep(1.0)
        for k in range(LINES):
            record = {"event": "train", "step": 10_000 + k, "epoch": 9, "loss": 0.5, "lr": 1e-4}
            with (run / "metrics.jsonl").open("a") as handle:
                written[10_000 + k] = time.perf_counter()
                handle.write(json.dumps(record) + "\n")
            time.sleep(0.3)

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    with client.stream("GET", f"/runs/{name}/events", timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen > base:
                    step = json.loads(line[6:])["step"]
                    arrived[step] = time.perf_counter()
                    if len(arrived) == LINES:
                        break
    writer.join()
    (run / ".lock").unlink()
    return [1000 * (arrived[s] - written[s]) for s in written]


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        seed = train_one(Path(tmp))
        root = Path(tmp) / "runs"
        names = fill(root, seed, args.runs)
        process, url = start_studio(root)
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                result = {
                    "runs_page_ms": timed(client, "/"),
                    "runs_page_filtered_ms": timed(client, "/?q=team-3&sort=gain"),
                    "run_page_ms": timed(client, f"/runs/{names[0]}"),
                    "compare_ms": timed(client, f"/compare?run={names[0]}&run={names[1]}&run={names[2]}"),
                    "live_line_ms": live_delays(client, root, names[0]),
                }
        finally:
            process.terminate()
            process.wait(timeout=30)
    summary = {k: {"median": statistics.median(v), "p95": p95(v)} for k, v in result.items()}
    for key, value in summary.items():
        print(f"{key}: median {value['median']:.1f} ms, p95 {value['p95']:.1f} ms")
    line = (
        f"studio runs_page_ms {summary['runs_page_ms']['median']:.1f} runs_page_p95_ms "
        f"{summary['runs_page_ms']['p95']:.1f} run_page_ms {summary['run_page_ms']['median']:.1f} compare_ms "
        f"{summary['compare_ms']['median']:.1f} live_line_ms {summary['live_line_ms']['median']:.1f} "
        f"(p95 {summary['live_line_ms']['p95']:.1f})"
    )
    if args.json:
        record = {
            "command": "python bench/studio.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "runs": args.runs,
            "repeats": REPEATS,
            "summary": summary,
            "line": line,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(line)


if __name__ == "__main__":
    main()
