"""The plain Hugging Face Trainer + PEFT recipe that tutorials teach, as the benchmarks' baseline: the CSV files
tokenized with padding="max_length", max_length=128, MiniLM with a sequence-classification head, and peft's
LoRA on the same layers tunesmith targets."""

from __future__ import annotations

from typing import Any


def baseline_data_and_model(files: dict[str, str], lora: dict[str, Any]) -> tuple[Any, Any]:
    """(the tokenized DatasetDict of `files`, labels as ids in sorted order; the LoRA-wrapped model)."""
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.methods.lora import DEFAULT_TARGETS
    from tunesmith.models.catalog import resolve_model

    path = resolve_model("minilm").source
    data = load_dataset("csv", data_files=files)
    labels = sorted(set(data["train"]["label"]))
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize(batch):
        enc = tokenizer(batch["text"], padding="max_length", truncation=True, max_length=128)
        enc["labels"] = [labels.index(x) for x in batch["label"]]
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
    return data, get_peft_model(model, config)
