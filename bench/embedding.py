"""Embedding fine-tuning: tunesmith vs sentence-transformers' own trainer, same model, pairs, LoRA and loss.

Model: the packaged all-MiniLM-L6-v2. Data: data/debian-retrieval (a package's synopsis as the query, the first
paragraph of its description as the document). Every side trains LoRA r=8, alpha 16, dropout 0 on the
attention and feed-forward projections with MultipleNegativesRankingLoss (scale 20, in-batch negatives),
batch 32, lr 5e-4, linear decay after 6% warmup, weight decay 0.01, texts cut at 256 tokens (the model's
max_seq_length), 1 epoch (--epochs: more).

Sides, each in its own child process (so peak RSS is its own):
- sentence-transformers' SentenceTransformerTrainer as its docs advise for this loss: the NO_DUPLICATES batch
  sampler (a text twice in a batch would be its own negative), the LoRA adapter put on its transformer module
  with peft, the model as it ships (attention dropout 0.1), fp32 (no bf16 on a CPU run);
- tunesmith with its defaults for the embedding task: batches without a repeated text, each batch's texts
  sorted by length into forward passes of at most 512 padded tokens (little padding), attention dropout 0
  (PyTorch's fused attention runs on a CPU only without it), its fused LoRA layers; no validation split, as
  the other side has none.

NDCG@10 on held-out queries is computed the same way for every trained model (evaluation/retrieval.py, equal
to sentence-transformers' InformationRetrievalEvaluator to 1e-6: tests/unit/test_retrieval_metrics.py):
each test synopsis searches the test split's 400 documents. Samples/s counts training pairs per second of
training.

    python bench/embedding.py [--train-examples 1200] [--epochs 1] [--seeds 1 2 3] [--sides ...] [--json FILE]

Last line: `speedup X.XX memory X.XX ndcg_delta +X.XXX` (tunesmith / sentence-transformers' mean samples/s,
tunesmith / its highest peak RSS, tunesmith - its mean NDCG@10).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from apart import in_child

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "debian-retrieval"
MODEL = "minilm"
LORA = {"rank": 8, "alpha": 16, "dropout": 0.0}
TRAIN = {
    "batch_size": 32,
    "learning_rate": 5e-4,
    "warmup_ratio": 0.06,
    "weight_decay": 0.01,
    "max_length": 256,
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_pairs(path: Path, limit: int | None = None) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:limit]]


def ndcg_at_10(encode, pairs: list[dict]) -> float:
    """Mean NDCG@10 of each pair's anchor searching every pair's positive; `encode(texts)` -> unit rows."""
    from tunesmith.evaluation.retrieval import retrieval_scores
    from tunesmith.evaluation.vector_search import CorpusIndex

    queries = encode([p["anchor"] for p in pairs])
    corpus = CorpusIndex(encode([p["positive"] for p in pairs]))
    scores = retrieval_scores(queries, corpus, [{i} for i in range(len(pairs))])
    return statistics.mean(scores["ndcg@10"])


def run_tunesmith(args: dict, out: mp.Queue) -> None:
    import io

    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        train, test = Path(tmp) / "train.jsonl", Path(tmp) / "test.jsonl"
        train.write_text("".join(json.dumps(p) + "\n" for p in args["train_pairs"]))
        test.write_text("".join(json.dumps(p) + "\n" for p in args["test_pairs"]))
        cfg = build_config(
            {
                "task": {"name": "embedding", "loss": "mnrl"},
                "model": {"name": MODEL, "max_length": TRAIN["max_length"]},
                "data": {"train": str(train), "test": str(test), "validation_fraction": 0.0},
                "method": {"name": "lora", **LORA},
                "train": {
                    "epochs": args["epochs"],
                    "batch_size": TRAIN["batch_size"],
                    "learning_rate": TRAIN["learning_rate"],
                    "warmup_ratio": TRAIN["warmup_ratio"],
                    "weight_decay": TRAIN["weight_decay"],
                    "seed": args["seed"],
                    "early_stopping_patience": None,
                },
                "evaluation": {"forgetting": False},
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        result = finetune(cfg, Console(file=io.StringIO()))
        seconds = result.summary["train_seconds"]
        ndcg = result.evaluation["tuned"]["ndcg@10"]
    out.put({"seconds": seconds, "ndcg@10": ndcg, "peak_rss_mb": peak_rss_mb()})


def run_sentence_transformers(args: dict, out: mp.Queue) -> None:
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from tunesmith.methods.lora import DEFAULT_TARGETS
    from tunesmith.models.catalog import resolve_model

    model = SentenceTransformer(resolve_model(MODEL).source, device="cpu", local_files_only=True)
    model.max_seq_length = TRAIN["max_length"]
    # sentence-transformers' add_adapter needs peft >= 0.22 under this transformers; the same adapter, put on
    # the model's transformer module with peft itself, as its docs showed before that integration
    transformer = model[0]
    transformer.auto_model = get_peft_model(
        transformer.auto_model,
        LoraConfig(
            r=LORA["rank"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=DEFAULT_TARGETS["bert"],
            task_type=TaskType.FEATURE_EXTRACTION,
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=args["epochs"],
            per_device_train_batch_size=TRAIN["batch_size"],
            learning_rate=TRAIN["learning_rate"],
            lr_scheduler_type="linear",
            warmup_ratio=TRAIN["warmup_ratio"],
            weight_decay=TRAIN["weight_decay"],
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=args["seed"],
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
        )
        dataset = Dataset.from_list(
            [{"anchor": p["anchor"], "positive": p["positive"]} for p in args["train_pairs"]]
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=config, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started

    def encode(texts: list[str]):
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_tensor=True).cpu()

    out.put(
        {"seconds": seconds, "ndcg@10": ndcg_at_10(encode, args["test_pairs"]), "peak_rss_mb": peak_rss_mb()}
    )


SIDES = {"sentence-transformers": run_sentence_transformers, "tunesmith": run_tunesmith}


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    def sd(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    return {
        name: {
            "samples_per_second": statistics.mean(r["samples_per_second"] for r in rs),
            "samples_per_second_sd": sd([r["samples_per_second"] for r in rs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "ndcg@10": statistics.mean(r["ndcg@10"] for r in rs),
            "ndcg@10_sd": sd([r["ndcg@10"] for r in rs]),
        }
        for name, rs in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-examples", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--sides", nargs="+", choices=list(SIDES), default=list(SIDES), help="run only these (no last line)"
    )
    a = parser.parse_args()
    import torch

    train_pairs = read_pairs(DATA / "train.jsonl", a.train_examples)
    test_pairs = read_pairs(DATA / "test.jsonl")
    print(
        f"{MODEL} + LoRA r=8, MNRL scale 20, {len(train_pairs)} pairs x {a.epochs} epoch(s), batch 32, lr 5e-4, "
        f"{len(test_pairs)} held-out queries, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {name: [] for name in a.sides}
    print(f"{'':22} {'seed':>4} {'samples/s':>9} {'train s':>8} {'peak RSS MB':>12} {'NDCG@10':>8}")
    for seed in a.seeds:
        args = {"seed": seed, "train_pairs": train_pairs, "test_pairs": test_pairs, "epochs": a.epochs}
        for name in a.sides:
            r = in_child(SIDES[name], args)
            r["samples_per_second"] = len(train_pairs) * a.epochs / r["seconds"]
            runs[name].append(r)
            print(
                f"{name:22} {seed:4d} {r['samples_per_second']:9.1f} {r['seconds']:8.1f} "
                f"{r['peak_rss_mb']:12.0f} {r['ndcg@10']:8.3f}",
                flush=True,
            )
    summary = summarize(runs)
    for name, m in summary.items():
        print(
            f"{name:22} mean {m['samples_per_second']:9.1f} ±{m['samples_per_second_sd']:.1f} "
            f"{m['peak_rss_mb']:12.0f} {m['ndcg@10']:8.3f} ±{m['ndcg@10_sd']:.3f}"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    if set(a.sides) != set(SIDES):
        return
    ours, theirs = summary["tunesmith"], summary["sentence-transformers"]
    print(
        f"speedup {ours['samples_per_second'] / theirs['samples_per_second']:.2f} "
        f"memory {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f} "
        f"ndcg_delta {ours['ndcg@10'] - theirs['ndcg@10']:+.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
