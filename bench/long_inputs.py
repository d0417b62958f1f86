"""Texts longer than the model takes: truncate them, or read them in overlapping windows?

Measured on the frozen encoder with tunesmith's linear probe (evaluation/baseline.py), which is what the
run's base is and what LP-FT and `train.keep` start from: for each way of reading a text, the training split
is embedded, the probe fitted, and the validation and test splits scored (macro-F1). No fine-tuning, so the
comparison is cheap and free of training noise; the probe is deterministic for a given seed.

Ways of reading a text (MiniLM takes 512 tokens; it was trained on 128-token inputs):
- `first-N`: the first N tokens (what `model.max_length: N` does today);
- `windows-N`: the whole text in windows of N tokens, each overlapping the one before by a quarter; the
  text's embedding is the mean of its windows' mean-pooled embeddings, weighted by their token counts.

    python bench/long_inputs.py [--datasets chitchat-prompts debian-long] [--json bench/results/long-inputs.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from tunesmith.evaluation.baseline import LinearProbe, embed_ids
from tunesmith.evaluation.metrics import classification_metrics
from tunesmith.models.catalog import resolve_model

ROOT = Path(__file__).resolve().parents[1]
PANEL = ROOT / "bench" / "panel"
READINGS = ("first-128", "first-256", "first-512", "windows-128", "windows-256", "windows-512")


def read_split(folder: Path, split: str) -> tuple[list[str], list[str]]:
    with (folder / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def embed(encoder, tokenizer, texts: list[str], reading: str) -> np.ndarray:
    how, size = reading.split("-")
    n = int(size)
    if how == "first":
        pieces = tokenizer(texts, truncation=True, max_length=n)["input_ids"]
        owner = list(range(len(texts)))
    else:  # the tokenizer's own overflow windows: `stride` is the tokens shared with the window before
        out = tokenizer(texts, truncation=True, max_length=n, stride=n // 4, return_overflowing_tokens=True)
        pieces, owner = out["input_ids"], out["overflow_to_sample_mapping"]
    vectors = embed_ids(encoder, pieces, tokenizer.pad_token_id or 0, max_tokens=8192)
    weights = torch.tensor([len(p) for p in pieces], dtype=torch.float32)
    index = torch.tensor(owner)
    total = torch.zeros(len(texts), vectors.shape[1]).index_add_(
        0, index, torch.from_numpy(vectors) * weights[:, None]
    )
    tokens = torch.zeros(len(texts)).index_add_(0, index, weights)
    return (total / tokens[:, None]).numpy()


def measure(name: str, readings: list[str], seed: int) -> dict:
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_model("minilm").source
    encoder, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    splits = {s: read_split(PANEL / name, s) for s in ("train", "validation", "test")}
    labels = sorted(set(splits["train"][1]))
    lengths = [len(i) for i in tokenizer(splits["train"][0], truncation=False)["input_ids"]]
    result = {
        "train_tokens_median": int(np.median(lengths)),
        "train_share_over_512": float(np.mean(np.array(lengths) > 512)),
        "readings": {},
    }
    for reading in readings:
        start = time.perf_counter()
        features = {s: embed(encoder, tokenizer, texts, reading) for s, (texts, _) in splits.items()}
        seconds = time.perf_counter() - start
        y = {s: [labels.index(label) for label in splits[s][1]] for s in splits}
        probe = LinearProbe.fit(features["train"], y["train"], seed)
        scores = {
            s: classification_metrics(y[s], probe.predict(features[s]), labels)["macro_f1"]
            for s in ("validation", "test")
        }
        result["readings"][reading] = {**scores, "embed_seconds": round(seconds, 1)}
        print(
            f"{name:18} {reading:12} validation {scores['validation']:.3f}  test {scores['test']:.3f}"
            f"  ({seconds:.0f} s to embed the three splits)",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["chitchat-prompts", "debian-long"])
    parser.add_argument("--readings", nargs="+", default=list(READINGS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    results = {name: measure(name, args.readings, args.seed) for name in args.datasets}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
