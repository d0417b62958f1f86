"""How long the data check takes, and what it costs next to loading the same data the plain Hugging Face way.

For classification (CSV) and chat (OpenAI JSONL), ROWS examples are built from the shipped demo data (each
row recombines two demo rows, seeded, so texts vary like real ones). Each side runs in its own child process,
timed from start to finish (imports included, as a user waits for them):

- tunesmith: `tunesmith check FILE --task T --json`: every reader check, duplicates, leakage, labels, lengths
  in the model's tokens, short examples, personal data, narrowness;
- baseline: `datasets.load_dataset` + `Dataset.map` tokenizing every example with the same tokenizer (the chat
  template applied for chat): what a Trainer script does before training, checking nothing.

    python bench/check.py [--rows 100000] [--gigabyte]

`--gigabyte` also checks a chat JSONL of about 1 GB and reports peak memory (the target: under 1 GB).
Last lines: `TASK seconds X.X rows_per_second N ratio X.XX peak_rss_mb N` (ratio = tunesmith / baseline time).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from apart import in_child

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"classification": "minilm", "chat": "smollm2-135m-instruct"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_classification(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with (ROOT / "data/debian-sections/train.csv").open(encoding="utf-8") as handle:
        demo = list(csv.DictReader(handle))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            a, b = rng.choice(demo)["text"].split(), rng.choice(demo)
            tail = b["text"].split()
            writer.writerow([" ".join(a[: max(1, len(a) // 2)] + tail[len(tail) // 2 :]), b["label"]])


def make_chat(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    demo = [json.loads(line)["messages"] for line in (ROOT / "data/debian-chat/train.jsonl").open()]
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            a, b = rng.choice(demo), rng.choice(demo)
            messages = [dict(m) for m in a]
            messages[-1]["content"] += " " + b[-1]["content"][: rng.randint(10, 60)]
            handle.write(json.dumps({"messages": messages}) + "\n")


def run_tunesmith(task: str, path: str, out: mp.Queue) -> None:
    start = time.perf_counter()
    from tunesmith.cli import main

    buffer = io.StringIO()
    code = 0
    with redirect_stdout(buffer):
        try:
            main(["check", path, "--task", task, "--model", MODELS[task], "--json"])
        except SystemExit as exc:
            code = exc.code or 0
    report = json.loads(buffer.getvalue())
    out.put(
        {
            "seconds": time.perf_counter() - start,
            "exit_code": code,
            "examples": report["files"]["train"]["examples"],
            "warnings": [w["kind"] for w in report["warnings"]],
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def run_baseline(task: str, path: str, out: mp.Queue) -> None:
    start = time.perf_counter()
    from datasets import disable_caching, load_dataset
    from transformers import AutoTokenizer

    from tunesmith.models.catalog import resolve_model

    disable_caching()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODELS[task]).source)
    with tempfile.TemporaryDirectory() as cache:
        if task == "classification":
            data = load_dataset("csv", data_files=path, split="train", cache_dir=cache)
            data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
        else:
            data = load_dataset("json", data_files=path, split="train", cache_dir=cache)

            def encode(batch: dict) -> dict:
                texts = tokenizer.apply_chat_template(batch["messages"], tokenize=False)
                return tokenizer(texts, add_special_tokens=False, truncation=True, max_length=512)

            data = data.map(encode, batched=True, remove_columns=["messages"])
        rows = len(data)
    out.put({"seconds": time.perf_counter() - start, "examples": rows, "peak_rss_mb": peak_rss_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--gigabyte", action="store_true", help="also check a ~1 GB chat JSONL")
    args = parser.parse_args()
    results: dict = {"rows": args.rows, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"classification": Path(tmp) / "tickets.csv", "chat": Path(tmp) / "chats.jsonl"}
        make_classification(files["classification"], args.rows)
        make_chat(files["chat"], args.rows)
        for task, path in files.items():
            mine = in_child(run_tunesmith, task, str(path))
            base = in_child(run_baseline, task, str(path))
            results[task] = {"tunesmith": mine, "baseline": base, "file_mb": path.stat().st_size / 2**20}
            print(f"{task}: tunesmith {mine['seconds']:.1f} s, baseline {base['seconds']:.1f} s", flush=True)
        if args.gigabyte:
            big = Path(tmp) / "big.jsonl"
            make_chat(big, 2_400_000, seed=1)
            mine = in_child(run_tunesmith, "chat", str(big))
            results["chat_1gb"] = {"tunesmith": mine, "file_mb": big.stat().st_size / 2**20}
    out = ROOT / "bench" / "results" / "check.json"
    if not args.gigabyte and out.is_file():  # keep the last 1 GB measurement (it takes about 8 minutes)
        earlier = json.loads(out.read_text()).get("chat_1gb")
        if earlier:
            results["chat_1gb"] = {**earlier, "note": "from an earlier run with --gigabyte"}
    out.write_text(json.dumps(results, indent=2) + "\n")
    for task in ("classification", "chat", "chat_1gb"):
        if task not in results:
            continue
        mine = results[task]["tunesmith"]
        base = results[task].get("baseline")
        ratio = f" ratio {mine['seconds'] / base['seconds']:.2f}" if base else ""
        print(
            f"{task} rows {mine['examples']} file_mb {results[task]['file_mb']:.0f} seconds {mine['seconds']:.1f} "
            f"rows_per_second {mine['examples'] / mine['seconds']:,.0f}{ratio} peak_rss_mb {mine['peak_rss_mb']:.0f}"
        )


if __name__ == "__main__":
    main()
