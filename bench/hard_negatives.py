"""Does `tunesmith mine` help? The shipped retrieval set trained on its pairs, and on the same pairs with a
hard negative each that the base model mined, same everything else, several seeds.

Negatives are mined among the training positives only (the default without --corpus), so no validation or
test document can become a training text. Both sides: configs/embedding-retrieval.yaml (MiniLM, LoRA, MNRL,
batch 32, 1 epoch), no forgetting measurement (it does not depend on the data). Reported per side: test
NDCG@10 and Recall@10 of the tuned model (each test synopsis searching the test split's 400 documents),
training pairs/s, and the pairs mining left out.

    python bench/hard_negatives.py [--seeds 1 2 3] [--margin 0.05] [--json FILE]

Last line: `ndcg_delta +X.XXX (sd X.XXX) recall@10_delta +X.XXX` (with negatives - without, means).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/embedding-retrieval.yaml"


def tunesmith(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"tunesmith {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def train(out: Path, train_file: Path, seed: int) -> dict:
    tunesmith(
        "train", "--config", str(CONFIG), "--out", str(out), "--overwrite",
        f"data.train={train_file}", f"train.seed={seed}", "evaluation.forgetting=false", "train.estimate=never",
    )  # fmt: skip
    report = json.loads((out / "eval.json").read_text())
    summary = json.loads((out / "run.json").read_text())
    return {
        "ndcg@10": report["tuned"]["ndcg@10"],
        "recall@10": report["tuned"]["recall@10"],
        "base_ndcg@10": report["base"]["ndcg@10"],
        "samples_per_s": summary.get("train_samples_per_second"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs = ROOT / "data/debian-retrieval/train.jsonl"
        triplets = folder / "triplets.jsonl"
        print(tunesmith("mine", str(pairs), "--out", str(triplets), "--margin", str(args.margin)).strip())
        rows: dict[str, list[dict]] = {"pairs": [], "mined": []}
        for seed in args.seeds:
            for side, data in (("pairs", pairs), ("mined", triplets)):
                row = train(folder / f"{side}-{seed}", data, seed)
                rows[side].append(row)
                print(f"seed {seed} {side:>5}: " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    for side, got in rows.items():
        ndcg = [r["ndcg@10"] for r in got]
        spread = statistics.stdev(ndcg) if len(ndcg) > 1 else 0.0
        print(f"{side:>5}: NDCG@10 {statistics.mean(ndcg):.3f} ± {spread:.3f}")
    deltas = [m["ndcg@10"] - p["ndcg@10"] for p, m in zip(rows["pairs"], rows["mined"], strict=True)]
    recall = [m["recall@10"] - p["recall@10"] for p, m in zip(rows["pairs"], rows["mined"], strict=True)]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    sd = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
    print(
        f"ndcg_delta {statistics.mean(deltas):+.3f} (sd {sd:.3f}) recall@10_delta {statistics.mean(recall):+.3f}"
    )


if __name__ == "__main__":
    main()
