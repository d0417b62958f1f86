"""The Hugging Face Trainer + PEFT recipe the benchmarks compare with, in two configurations:

- `plain`, as tutorials teach it: the CSV files tokenized with padding="max_length", max_length=128, default
  TrainingArguments, MiniLM with a sequence-classification head, peft's LoRA on the layers tunesmith targets.
- `expert`, as the Trainer's own docs advise for speed and quality: tokenized without padding and padded per
  batch (DataCollatorWithPadding), batches of similar length (`train_sampling_strategy="group_by_length"`),
  validation each epoch and the best epoch's model kept on validation macro-F1 (`load_best_model_at_end`).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

MAX_LENGTH = 128


def baseline_data_and_model(
    files: dict[str, str], lora: dict[str, Any], pad_to_max: bool = True
) -> tuple[Any, Any, Any]:
    """(the tokenized DatasetDict of `files`, labels as ids in sorted order; the LoRA-wrapped model; the
    tokenizer). `pad_to_max`: every example padded to MAX_LENGTH (the tutorial's way)."""
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.methods.lora import DEFAULT_TARGETS
    from tunesmith.models.catalog import resolve_model

    path = resolve_model("minilm").source
    data = load_dataset("csv", data_files=files, keep_default_na=False)
    labels = sorted({str(x) for x in data["train"]["label"]})
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize(batch):
        padding = "max_length" if pad_to_max else False
        enc = tokenizer(batch["text"], padding=padding, truncation=True, max_length=MAX_LENGTH)
        enc["labels"] = [labels.index(str(x)) for x in batch["label"]]
        return enc

    data = data.map(tokenize, batched=True, remove_columns=["text", "label"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=DEFAULT_TARGETS["bert"],
    )
    return data, get_peft_model(model, config), tokenizer


def train_and_test(
    files: dict[str, str],
    lora: dict[str, Any],
    epochs: int,
    lr: float,
    seed: int,
    expert: bool,
    bf16: bool = False,
) -> dict[str, float]:
    """Train the recipe, predict the test split; test macro-F1, training samples/s and seconds. `bf16`: the
    Trainer's bf16 autocast (on a CPU it needs use_cpu), given where tunesmith's precision auto picks bf16."""
    import numpy as np
    import torch
    from sklearn.metrics import f1_score
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    # The Trainer seeds only when training starts; the head and LoRA's A matrices are drawn when the model is
    # built, so seed before that (the Trainer's docs: seed, or model_init, for runs that can be repeated).
    set_seed(seed)
    wanted = files if expert else {k: files[k] for k in ("train", "test")}
    data, model, tokenizer = baseline_data_and_model(wanted, lora, pad_to_max=not expert)

    def macro_f1(prediction: Any) -> dict[str, float]:
        preds = np.argmax(prediction.predictions, axis=-1)
        return {"macro_f1": float(f1_score(prediction.label_ids, preds, average="macro"))}

    with tempfile.TemporaryDirectory() as tmp:
        options: dict[str, Any] = {}
        if expert:
            options = {
                "train_sampling_strategy": "group_by_length",
                "eval_strategy": "epoch",
                "save_strategy": "epoch",
                "save_total_limit": 1,
                "load_best_model_at_end": True,
                "metric_for_best_model": "macro_f1",
            }
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=epochs,
            per_device_train_batch_size=16,
            learning_rate=lr,
            report_to=[],
            seed=seed,
            disable_tqdm=True,
            **({"save_strategy": "no"} | options),
            **({"bf16": True, "use_cpu": not torch.cuda.is_available()} if bf16 else {}),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"] if expert else None,
            data_collator=DataCollatorWithPadding(tokenizer) if expert else None,
            compute_metrics=macro_f1 if expert else None,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        # Score against the label_ids predict returns: with length grouping its order is not the file's.
        prediction = trainer.predict(data["test"])
    return {
        "macro_f1": macro_f1(prediction)["macro_f1"],
        "samples_per_second": len(data["train"]) * epochs / seconds,
        "train_seconds": round(seconds, 2),
    }
