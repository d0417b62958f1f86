"""The encoder tasks beyond single-label classification, tunesmith against the Hugging Face Trainer's own
example recipe for each, side by side in one run, each run in its own child process (peak RSS its own):

- `regression` on data/vader-movies (2,000 / 400 / 800 movie snippets, mean rating -4..+4):
  - `tunesmith`: configs/regression-sentiment.yaml (LoRA r16, lr 5e-4, 5 epochs, best epoch kept on
    validation RMSE), the seed set;
  - `hf-expert`: transformers' examples/pytorch/text-classification/run_classification.py as its README
    runs a regression (AutoModelForSequenceClassification with num_labels=1, `problem_type` regression,
    MSE; full fine-tuning, lr 2e-5, batch 32, 3 epochs, max_seq_length 128), configured as the Trainer's docs
    advise for speed and quality: per-batch padding (DataCollatorWithPadding), length-grouped batches,
    validation each epoch and the best epoch kept on validation MSE.
  The base (the frozen encoder with a ridge regression) comes from the tunesmith runs.

Metrics on the test split: Pearson (the headline, as GLUE's STS-B reports it), Spearman, RMSE; training
samples/s. Last line per task: `TASK speedup X.XX metric_delta +X.XXX` (tunesmith's samples/s over the
Trainer's; tunesmith's mean Pearson minus the Trainer's).

    python bench/tasks.py [--seeds 1 2 3] [--arms tunesmith hf-expert] [--json bench/results/tasks.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesmith.processes import run_apart

ROOT = Path(__file__).resolve().parents[1]
REGRESSION_DATA = {
    s: str(ROOT / "data" / "vader-movies" / f"{s}.csv") for s in ("train", "validation", "test")
}
HF_REGRESSION = {"learning_rate": 2e-5, "batch_size": 32, "epochs": 3, "max_length": 128}
"""run_classification.py's README example (text classification with BERT-family models)."""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def regression_scores(predicted: Any, truth: Any) -> dict[str, float]:
    from tunesmith.evaluation.regression import regression_metrics

    m = regression_metrics(predicted, truth)
    return {k: m[k] for k in ("pearson", "spearman", "rmse", "r2")}


def run_tunesmith_regression(job: dict, out: Any) -> None:
    import io

    import yaml
    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune
    from tunesmith.training.loop import steps_per_epoch

    with tempfile.TemporaryDirectory() as tmp:
        tree = yaml.safe_load((ROOT / "configs" / "regression-sentiment.yaml").read_text())
        tree["data"] = dict(REGRESSION_DATA)
        tree["train"]["seed"] = job["seed"]
        tree["evaluation"] = {"forgetting": False}
        tree["output_dir"] = str(Path(tmp) / "run")
        cfg = build_config(tree)
        result = finetune(cfg, Console(file=io.StringIO()))
        summary, evaluation = result.summary, result.evaluation
        epochs = summary["optimizer_steps"] / steps_per_epoch(summary["examples"]["train"], cfg.train)
        tuned, base = evaluation["tuned"], evaluation["base"]
        out.put(
            {
                **{k: tuned[k] for k in ("pearson", "spearman", "rmse", "r2")},
                **{f"base_{k}": base[k] for k in ("pearson", "spearman", "rmse", "r2")},
                "samples_per_second": summary["examples"]["train"] * epochs / summary["train_seconds"],
                "train_seconds": summary["train_seconds"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )


def run_hf_regression(job: dict, out: Any) -> None:
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from tunesmith.models.catalog import resolve_model

    set_seed(job["seed"])  # before the head is drawn (the Trainer seeds only when training starts)
    path = resolve_model("minilm").source
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = load_dataset("csv", data_files=REGRESSION_DATA, keep_default_na=False)

    def tokenize(batch: dict) -> dict:
        enc = tokenizer(batch["text"], truncation=True, max_length=HF_REGRESSION["max_length"])
        enc["labels"] = [float(x) for x in batch["sentiment"]]
        return enc

    data = data.map(tokenize, batched=True, remove_columns=["text", "sentiment"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, problem_type="regression")

    def mse(prediction: Any) -> dict[str, float]:
        return {"mse": float(np.mean((prediction.predictions[:, 0] - prediction.label_ids) ** 2))}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=HF_REGRESSION["epochs"],
            per_device_train_batch_size=HF_REGRESSION["batch_size"],
            learning_rate=HF_REGRESSION["learning_rate"],
            train_sampling_strategy="group_by_length",
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="mse",
            greater_is_better=False,
            report_to=[],
            seed=job["seed"],
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=mse,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        prediction = trainer.predict(data["test"])
    out.put(
        {
            **regression_scores(prediction.predictions[:, 0], prediction.label_ids),
            "samples_per_second": len(data["train"]) * HF_REGRESSION["epochs"] / seconds,
            "train_seconds": round(seconds, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


TASKS = {"regression": {"tunesmith": run_tunesmith_regression, "hf-expert": run_hf_regression}}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict) -> dict:
    out: dict[str, dict] = {}
    for task, arms in runs.items():
        rows: dict[str, dict] = {}
        ours = arms.get("tunesmith", [])
        if ours:
            rows["base"] = {
                k: mean_sd([r[f"base_{k}"] for r in ours])[0] for k in ("pearson", "spearman", "rmse")
            }
        for arm, rs in arms.items():
            if rs:
                rows[arm] = {
                    **{k: mean_sd([r[k] for r in rs])[0] for k in ("pearson", "spearman", "rmse")},
                    "pearson_sd": mean_sd([r["pearson"] for r in rs])[1],
                    "samples_per_second": statistics.mean(r["samples_per_second"] for r in rs),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                    "seeds": len(rs),
                }
        out[task] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", default=["tunesmith", "hf-expert"])
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    runs: dict[str, dict[str, list[dict]]] = {}
    for task in a.tasks:
        runs[task] = {arm: [] for arm in a.arms}
        for seed in a.seeds:
            for arm in a.arms:
                r = run_apart(TASKS[task][arm], {"seed": seed})
                runs[task][arm].append({"seed": seed, **r})
                print(
                    f"{task:12} {arm:10} seed {seed}: pearson {r['pearson']:.3f} spearman {r['spearman']:.3f} "
                    f"rmse {r['rmse']:.3f}  {r['samples_per_second']:.1f} samples/s  {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                if a.json:
                    a.json.parent.mkdir(parents=True, exist_ok=True)
                    a.json.write_text(json.dumps({"runs": runs, "summary": summarise(runs)}, indent=2) + "\n")
    summary = summarise(runs)
    for task, rows in summary.items():
        print(f"\n{task}")
        print(
            f"  {'arm':10} {'pearson':>16} {'spearman':>9} {'rmse':>7} {'samples/s':>10} {'peak RSS MB':>12}"
        )
        for arm, r in rows.items():
            spread = f" ± {r['pearson_sd']:.3f}" if "pearson_sd" in r else ""
            speed = f"{r['samples_per_second']:10.1f}" if "samples_per_second" in r else f"{'':10}"
            rss = f"{r['peak_rss_mb']:12.0f}" if "peak_rss_mb" in r else ""
            print(
                f"  {arm:10} {r['pearson']:.3f}{spread:>9} {r['spearman']:9.3f} {r['rmse']:7.3f} {speed} {rss}"
            )
    for task, rows in summary.items():
        if "tunesmith" in rows and "hf-expert" in rows:
            speedup = rows["tunesmith"]["samples_per_second"] / rows["hf-expert"]["samples_per_second"]
            delta = rows["tunesmith"]["pearson"] - rows["hf-expert"]["pearson"]
            print(f"{task} speedup {speedup:.2f} metric_delta {delta:+.3f}")


if __name__ == "__main__":
    main()
