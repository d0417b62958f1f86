"""The encoder tasks beyond single-label classification, tunesmith against the Hugging Face Trainer's own
example recipe for each, side by side in one run, each run in its own child process (peak RSS its own):

- `regression` on data/vader-movies (2,000 / 400 / 800 movie snippets, mean rating -4..+4):
  - `tunesmith`: configs/regression-sentiment.yaml (LoRA r16 on the top half of the layers, the bottom half
    run once per text; lr 1e-3, 5 epochs, best epoch kept on validation RMSE), the seed set;
  - `hf-expert`: transformers' examples/pytorch/text-classification/run_classification.py as its README
    runs a regression (AutoModelForSequenceClassification with num_labels=1, `problem_type` regression,
    MSE; full fine-tuning, lr 2e-5, batch 32, 3 epochs, max_seq_length 128), configured as the Trainer's docs
    advise for speed and quality: per-batch padding (DataCollatorWithPadding), length-grouped batches,
    validation each epoch and the best epoch kept on validation MSE.
  The base (the frozen encoder with a ridge regression) comes from the tunesmith runs.

- `tokens` on data/debian-entities (1,500 / 300 / 600 Debian descriptions, LANG / FORMAT / PROTO spans):
  - `tunesmith`: configs/tokens-entities.yaml (LoRA r16 on the top half of the layers, lr 2e-3, 3 epochs,
    long texts in windows);
  - `hf-expert`: run_ner.py as its README runs it (full fine-tuning, lr 5e-5, batch 8, 3 epochs, first
    sub-token labelled), per-batch padding, length-grouped batches, the best epoch kept on validation F1.

- `multilabel` on data/debian-tags (2,000 / 400 / 800 Debian programs, 36 Debtags):
  - `tunesmith`: configs/multilabel-tags.yaml (LoRA r16 on the top half of the layers, lr 1e-3, thresholds
    tuned per label on validation);
  - `hf-expert`: run_classification.py on a multi-label set (`problem_type` multi_label_classification,
    BCE, a label predicted at sigmoid >= 0.5), the same settings as for regression, the best epoch kept on
    validation macro-F1.

Metrics on the test split: regression Pearson (the headline, as GLUE's STS-B reports it), Spearman, RMSE;
multi-label macro-F1 (the headline), micro-F1, samples-F1; entities: seqeval's entity F1 (the headline),
precision, recall; training samples/s. Last line per task:
`TASK speedup X.XX metric_delta +X.XXX` (tunesmith's samples/s over the Trainer's; tunesmith's mean headline
metric minus the Trainer's).

    python bench/tasks.py [--tasks regression multilabel tokens] [--seeds 1 2 3] [--arms tunesmith hf-expert]
                          [--json bench/results/tasks.json] [--set train.batch_size=32 ...]
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
"""run_classification.py's README example (text classification with BERT-family models); used for both
tasks."""
MULTILABEL_DATA = {
    s: str(ROOT / "data" / "debian-tags" / f"{s}.jsonl") for s in ("train", "validation", "test")
}
MULTILABEL_METRICS = ("macro_f1", "micro_f1", "samples_f1", "subset_accuracy")
TOKENS_DATA = {
    s: str(ROOT / "data" / "debian-entities" / f"{s}.jsonl") for s in ("train", "validation", "test")
}
HF_NER = {"learning_rate": 5e-5, "batch_size": 8, "epochs": 3}
"""run_ner.py's README example: the script's and TrainingArguments' defaults."""
TOKENS_METRICS = ("f1", "precision", "recall", "strict_f1", "accuracy")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def regression_scores(predicted: Any, truth: Any) -> dict[str, float]:
    from tunesmith.evaluation.regression import regression_metrics

    m = regression_metrics(predicted, truth)
    return {k: m[k] for k in ("pearson", "spearman", "rmse", "r2")}


def run_tunesmith(job: dict, out: Any) -> None:
    """tunesmith's arm of `job["task"]`: its demo config (OURS) on the bench's splits, the seed set, the
    forgetting check off (the recipes have none)."""
    import io

    import yaml
    from rich.console import Console

    from tunesmith.config import build_config
    from tunesmith.recipes.finetune import finetune
    from tunesmith.training.loop import steps_per_epoch

    config, data, metrics = OURS[job["task"]]
    with tempfile.TemporaryDirectory() as tmp:
        tree = yaml.safe_load((ROOT / "configs" / config).read_text())
        tree["data"] = dict(data)
        tree["train"]["seed"] = job["seed"]
        tree["evaluation"] = {"forgetting": False}
        tree["output_dir"] = str(Path(tmp) / "run")
        cfg = build_config(tree, job.get("set", []))
        result = finetune(cfg, Console(file=io.StringIO()))
        summary, evaluation = result.summary, result.evaluation
        epochs = summary["optimizer_steps"] / steps_per_epoch(summary["examples"]["train"], cfg.train)
        tuned, base = evaluation["tuned"], evaluation["base"]
        out.put(
            {
                **{k: tuned[k] for k in metrics},
                **{f"base_{k}": base[k] for k in metrics},
                "samples_per_second": summary["examples"]["train"] * epochs / summary["train_seconds"],
                "train_seconds": summary["train_seconds"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )


def train_recipe(
    model: Any,
    data: Any,
    collator: Any,
    compute_metrics: Any,
    metric: str,
    settings: dict,
    seed: int,
    *,
    greater_is_better: bool = True,
) -> tuple[Any, float]:
    """The Trainer as its docs advise (length-grouped batches, validation each epoch, the best epoch kept on
    `metric`) with a recipe's lr, batch and epochs; returns its predictions on the test split and the seconds
    training took (validation included)."""
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=settings["epochs"],
            per_device_train_batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            train_sampling_strategy="group_by_length",
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model=metric,
            greater_is_better=greater_is_better,
            report_to=[],
            seed=seed,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=collator,
            compute_metrics=compute_metrics,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        return trainer.predict(data["test"]), seconds


def run_hf_regression(job: dict, out: Any) -> None:
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
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

    prediction, seconds = train_recipe(
        model,
        data,
        DataCollatorWithPadding(tokenizer),
        mse,
        "mse",
        HF_REGRESSION,
        job["seed"],
        greater_is_better=False,
    )
    out.put(
        {
            **regression_scores(prediction.predictions[:, 0], prediction.label_ids),
            "samples_per_second": len(data["train"]) * HF_REGRESSION["epochs"] / seconds,
            "train_seconds": round(seconds, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def run_hf_multilabel(job: dict, out: Any) -> None:
    """run_classification.py on a multi-label set: `problem_type` multi_label_classification (BCE), labels
    from the training split, a label predicted where its sigmoid reaches 0.5 (the script's rule)."""
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        set_seed,
    )

    from tunesmith.evaluation.multilabel import multilabel_metrics
    from tunesmith.models.catalog import resolve_model

    set_seed(job["seed"])
    path = resolve_model("minilm").source
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = load_dataset("json", data_files=MULTILABEL_DATA)
    names = sorted({label for row in data["train"]["labels"] for label in row})

    def tokenize(batch: dict) -> dict:
        enc = tokenizer(batch["text"], truncation=True, max_length=HF_REGRESSION["max_length"])
        enc["labels"] = [[float(n in row) for n in names] for row in batch["labels"]]
        return enc

    data = data.map(tokenize, batched=True, remove_columns=["text", "labels"])
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), problem_type="multi_label_classification"
    )

    def decided(prediction: Any) -> tuple[Any, Any]:
        probs = 1 / (1 + np.exp(-prediction.predictions))
        return prediction.label_ids.astype(int), (probs >= 0.5).astype(int)

    def macro_f1(prediction: Any) -> dict[str, float]:
        return {"macro_f1": multilabel_metrics(*decided(prediction), names)["macro_f1"]}

    prediction, seconds = train_recipe(
        model, data, DataCollatorWithPadding(tokenizer), macro_f1, "macro_f1", HF_REGRESSION, job["seed"]
    )
    metrics = multilabel_metrics(*decided(prediction), names)
    out.put(
        {
            **{k: metrics[k] for k in MULTILABEL_METRICS},
            "samples_per_second": len(data["train"]) * HF_REGRESSION["epochs"] / seconds,
            "train_seconds": round(seconds, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def words_and_tags(split: str) -> dict[str, list]:
    """A split as run_ner reads it (words and IOB2 tags a text), from the same texts and spans tunesmith reads."""
    from tunesmith.sections import ModelConfig
    from tunesmith.tasks.tokens import Tokens, TokensParams

    task = Tokens(TokensParams(), ModelConfig(name="minilm"))
    examples = task.read(Path(TOKENS_DATA[split]), "auto")
    return {"tokens": [ex.word_texts() for ex in examples], "ner_tags": [task.tags_of(ex) for ex in examples]}


def run_hf_tokens(job: dict, out: Any) -> None:
    """transformers' examples/pytorch/token-classification/run_ner.py as its README runs it (its defaults: lr
    5e-5, batch 8, 3 epochs; a word's label on its first sub-token, the others -100; the tokenizer's own
    maximum length), configured as the Trainer's docs advise for speed and quality: per-batch padding
    (DataCollatorForTokenClassification), length-grouped batches, validation each epoch and the best epoch
    kept on validation entity F1 (seqeval, as the script computes it)."""
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        set_seed,
    )

    from tunesmith.evaluation.entities import entity_metrics
    from tunesmith.models.catalog import resolve_model

    set_seed(job["seed"])
    path = resolve_model("minilm").source
    tokenizer = AutoTokenizer.from_pretrained(path)
    splits = {s: words_and_tags(s) for s in TOKENS_DATA}
    names = sorted({t for tags in splits["train"]["ner_tags"] for t in tags})
    index = {n: i for i, n in enumerate(names)}

    def tokenize(batch: dict) -> dict:
        enc = tokenizer(batch["tokens"], truncation=True, is_split_into_words=True)
        labels = []
        for i, tags in enumerate(batch["ner_tags"]):
            previous, row = None, []
            for word in enc.word_ids(i):
                row.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            labels.append(row)
        enc["labels"] = labels
        return enc

    data = {
        s: Dataset.from_dict(d).map(tokenize, batched=True, remove_columns=["tokens", "ner_tags"])
        for s, d in splits.items()
    }
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index
    )

    def tags(prediction: Any) -> tuple[list[list[str]], list[list[str]]]:
        chosen = np.argmax(prediction.predictions, axis=-1)
        truth, predicted = [], []
        for p_row, l_row in zip(chosen, prediction.label_ids, strict=True):
            keep = l_row != -100
            truth.append([names[i] for i in l_row[keep]])
            predicted.append([names[i] for i in p_row[keep]])
        return truth, predicted

    def f1(prediction: Any) -> dict[str, float]:
        return {"f1": entity_metrics(*tags(prediction))["f1"]}

    prediction, seconds = train_recipe(
        model, data, DataCollatorForTokenClassification(tokenizer), f1, "f1", HF_NER, job["seed"]
    )
    metrics = entity_metrics(*tags(prediction))
    out.put(
        {
            **{k: metrics[k] for k in TOKENS_METRICS},
            "samples_per_second": len(data["train"]) * HF_NER["epochs"] / seconds,
            "train_seconds": round(seconds, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


OURS = {
    "regression": ("regression-sentiment.yaml", REGRESSION_DATA, ("pearson", "spearman", "rmse", "r2")),
    "multilabel": ("multilabel-tags.yaml", MULTILABEL_DATA, MULTILABEL_METRICS),
    "tokens": ("tokens-entities.yaml", TOKENS_DATA, TOKENS_METRICS),
}
"""tunesmith's arm per task: its config under configs/, the splits, the metrics kept (tuned and base)."""
TASKS = {
    "regression": {"tunesmith": run_tunesmith, "hf-expert": run_hf_regression},
    "multilabel": {"tunesmith": run_tunesmith, "hf-expert": run_hf_multilabel},
    "tokens": {"tunesmith": run_tunesmith, "hf-expert": run_hf_tokens},
}
HEADLINE = {"regression": "pearson", "multilabel": "macro_f1", "tokens": "f1"}
"""The metric of the last line per task: `metric_delta` is tunesmith's mean minus the Trainer's."""
SHOWN = {
    "regression": ("pearson", "spearman", "rmse"),
    "multilabel": ("macro_f1", "micro_f1", "samples_f1"),
    "tokens": ("f1", "precision", "recall"),
}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict) -> dict:
    out: dict[str, dict] = {}
    for task, arms in runs.items():
        shown, headline = SHOWN[task], HEADLINE[task]
        rows: dict[str, dict] = {}
        ours = arms.get("tunesmith", [])
        if ours:
            rows["base"] = {k: mean_sd([r[f"base_{k}"] for r in ours])[0] for k in shown}
        for arm, rs in arms.items():
            if rs:
                rows[arm] = {
                    **{k: mean_sd([r[k] for r in rs])[0] for k in shown},
                    f"{headline}_sd": mean_sd([r[headline] for r in rs])[1],
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
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for the tunesmith arm"
    )
    a = parser.parse_args()
    runs: dict[str, dict[str, list[dict]]] = {}
    for task in a.tasks:
        runs[task] = {arm: [] for arm in a.arms}
        for seed in a.seeds:
            for arm in a.arms:
                r = run_apart(TASKS[task][arm], {"seed": seed, "task": task, "set": a.set})
                runs[task][arm].append({"seed": seed, **r})
                scores = " ".join(f"{k} {r[k]:.3f}" for k in SHOWN[task])
                print(
                    f"{task:12} {arm:10} seed {seed}: {scores}  {r['samples_per_second']:.1f} samples/s  "
                    f"{r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                if a.json:
                    a.json.parent.mkdir(parents=True, exist_ok=True)
                    a.json.write_text(json.dumps({"runs": runs, "summary": summarise(runs)}, indent=2) + "\n")
    summary = summarise(runs)
    for task, rows in summary.items():
        shown = SHOWN[task]
        print(f"\n{task}")
        print(
            f"  {'arm':10} " + " ".join(f"{k:>16}" for k in shown) + f" {'samples/s':>10} {'peak RSS MB':>12}"
        )
        for arm, r in rows.items():
            cells = [f"{r[k]:.3f}" + (f" ± {r[f'{k}_sd']:.3f}" if f"{k}_sd" in r else "") for k in shown]
            speed = f"{r['samples_per_second']:10.1f}" if "samples_per_second" in r else f"{'':10}"
            rss = f"{r['peak_rss_mb']:12.0f}" if "peak_rss_mb" in r else ""
            print(f"  {arm:10} " + " ".join(f"{c:>16}" for c in cells) + f" {speed} {rss}")
    for task, rows in summary.items():
        if "tunesmith" in rows and "hf-expert" in rows:
            speedup = rows["tunesmith"]["samples_per_second"] / rows["hf-expert"]["samples_per_second"]
            delta = rows["tunesmith"][HEADLINE[task]] - rows["hf-expert"][HEADLINE[task]]
            print(f"{task} speedup {speedup:.2f} metric_delta {delta:+.3f}")


if __name__ == "__main__":
    main()
