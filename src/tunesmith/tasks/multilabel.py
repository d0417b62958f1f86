"""Multi-label classification: a text and any number of labels (topics of a message, tags of a program).

The model is the classifier of tasks/classification.py (an encoder, its mean-pooled hidden states through a
linear head) with one sigmoid per label and binary cross-entropy, each label's loss averaged over the labels.
A label is predicted where its probability reaches its threshold, tuned per label on the validation split
by the same validation that picks the best checkpoint, and stored with that model (evaluation/multilabel.py).
The base model is the frozen encoder with one logistic regression per label (one-vs-rest), its thresholds
tuned on the same validation split; it is also the head step 0 validates, so a run keeps it when tuning does
not beat it.

Labels come as a list (JSON lines), a string of labels with a separator (`task.separator`, CSV), or one
0/1 column per label (`task.label_columns`). An example may have no label at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from tunesmith.data.checks.view import ExampleView
from tunesmith.data.readers import (
    FileFormat,
    OnError,
    Record,
    parse_each,
    read_records,
    require_columns,
    require_field,
)
from tunesmith.errors import DataError
from tunesmith.evaluation.baseline import MultiLabelProbe
from tunesmith.evaluation.bootstrap import Resampler
from tunesmith.evaluation.multilabel import (
    DEFAULT_THRESHOLD,
    MULTILABEL_HEADLINE,
    decide,
    multilabel_metrics,
    multilabel_resampler,
    tune_thresholds,
)
from tunesmith.plugin import PluginParams
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import Evaluation
from tunesmith.tasks.classification import Classification, sorted_labels
from tunesmith.tasks.text_pairs import TextInputParams, model_inputs, split_input


class MultilabelParams(TextInputParams):
    name: Literal["multilabel"] = "multilabel"
    label_column: str = "labels"
    """Column or field holding the labels: a list (JSONL) or a string split at `separator`."""
    separator: str = Field(";", min_length=1)
    """What separates the labels in a string (`tag1;tag2`); spaces around each label are dropped."""
    label_columns: list[str] = Field(default_factory=list)
    """Instead of label_column: one column per label holding 0 or 1 (true/false); the column names are
    the labels."""
    pooling: Literal["mean", "cls"] = "mean"
    """What the head reads, as for classification (`mean`: what the base model's probe reads)."""
    head_init: Literal["probe", "random"] = "probe"
    """Where training starts the head: the base model's probe (LP-FT; needs pooling=mean), or transformers'
    random initialisation. Step 0 validates the probe either way (pooling=mean). `probe` measured on
    configs/multilabel-tags.yaml (36 Debtags, LoRA r16, lr 2e-3, 2026-12-05): from a random head the sparse
    sigmoid targets drove the model to predict each tag's prior for every text (validation macro-F1 0.59 at
    step 0, 0.05 and 0.06 after epochs 1 and 2; at lr 5e-4 0.05 and 0.07: the head's weights move too slowly
    against the pull of the many zero targets); from the probe it rose to 0.61 (test macro-F1 0.488 -> 0.510;
    at lr 5e-4, 0.525)."""

    @model_validator(mode="after")
    def _probe_needs_mean(self) -> MultilabelParams:
        if self.head_init == "probe" and self.pooling != "mean":
            raise ValueError(
                "head_init=probe starts the head from the mean-pooled probe: it needs pooling=mean"
            )
        return self


NO_LABEL = "(no label)"
"""The drift report's category of an answer that gives no label at all."""


@dataclass(frozen=True)
class LabelledTexts:
    text: str
    labels: tuple[str, ...] | None
    path: Path
    line: int
    unit: str = "line"
    pair: str | None = None


def _truthy(record: Record, column: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise record.error(f'label column "{column}" must be 0 or 1 (or true/false), got {value!r}')


@TASKS.register("multilabel")
class Multilabel(Classification):
    name = "multilabel"
    Params = MultilabelParams  # type: ignore[assignment]
    default_metric = "macro_f1"
    headline = MULTILABEL_HEADLINE
    record_params = {"label_columns": []}
    """A retune's records hold the labels as a list (`record`), whatever columns the run read."""
    params: MultilabelParams  # type: ignore[assignment]

    def __init__(self, params: PluginParams, model_cfg: Any):
        super().__init__(params, model_cfg)
        self.thresholds: list[float] = []
        """Each label's decision threshold, tuned on validation with the model that holds them."""
        self.validation: list[LabelledTexts] = []
        """The validation split seen by fit: what the base model's thresholds are tuned on."""

    # --- data ---
    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[LabelledTexts]:
        columns = self.input_columns()
        if self.params.label_columns:
            columns.update({f"task.label_columns[{i}]": c for i, c in enumerate(self.params.label_columns)})
        else:
            columns["task.label_column"] = self.params.label_column
        return parse_each(
            require_columns(read_records(path, fmt, on_error), columns), self._example, on_error
        )

    def _example(self, record: Record) -> LabelledTexts:  # type: ignore[override]
        return LabelledTexts(
            self.text_of(record),
            self._labels(record),
            record.path,
            record.line,
            record.unit,
            self.pair_of(record),
        )

    def _labels(self, record: Record) -> tuple[str, ...]:
        if self.params.label_columns:
            return tuple(c for c in self.params.label_columns if _truthy(record, c, require_field(record, c)))
        value = require_field(record, self.params.label_column)
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(self.params.separator)]
            return tuple(dict.fromkeys(part for part in parts if part))
        if isinstance(value, list):
            names = []
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
                    raise record.error(f"each label must be a non-empty string or an integer, got {item!r}")
                names.append(str(item).strip())
            return tuple(dict.fromkeys(names))
        raise record.error(
            f'labels in "{self.params.label_column}" must be a list or a string of labels separated by '
            f'"{self.params.separator}" (task.separator), got {type(value).__name__}'
        )

    def view(self, example: LabelledTexts) -> ExampleView:  # type: ignore[override]
        joined = self.params.separator.join(sorted(example.labels or ()))
        return ExampleView(
            example.path,
            example.line,
            example.unit,
            self.input_text(example),
            joined,
            True,
            labels=example.labels,
        )

    def fit(self, train: list[LabelledTexts], others: dict[str, list[LabelledTexts]]) -> None:  # type: ignore[override]
        names = {label for ex in train for label in ex.labels or ()}
        if not names:
            raise DataError(train[0].path, None, "no training example has a label", kind="labels")
        self.labels = sorted_labels(names)
        self.thresholds = [DEFAULT_THRESHOLD] * len(self.labels)
        self.validation = list(others.get("validation", []))
        for examples in others.values():
            self.check(examples)

    def check(self, examples: Sequence[LabelledTexts]) -> None:  # type: ignore[override]
        known = set(self.labels)
        for ex in examples:
            unknown = [label for label in ex.labels or () if label not in known]
            if unknown:
                raise DataError(
                    ex.path,
                    ex.line,
                    f'label "{unknown[0]}" never occurs in the training data ({len(self.labels)} training '
                    f"labels: {', '.join(self.labels[:20])}{' ...' if len(self.labels) > 20 else ''})",
                    ex.unit,
                    "labels",
                )

    def unlabelled(self, value: Any, line: int) -> LabelledTexts:
        text, pair = split_input(value, self.reads_pairs)
        return LabelledTexts(text, None, Path("<input>"), line, pair=pair)

    def model_state(self) -> dict[str, Any] | None:
        """The thresholds, written with the model that was validated with them."""
        return {"thresholds": self.threshold_of()}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.thresholds = [DEFAULT_THRESHOLD] * len(self.labels)  # until the model's own are read

    def restore_model_state(self, state: dict[str, Any]) -> None:
        saved = state.get("thresholds", {})
        self.thresholds = [float(saved.get(label, DEFAULT_THRESHOLD)) for label in self.labels]

    def truth(self, features: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.asarray([f["label"] for f in features], dtype=int)

    def encode(self, examples: Sequence[LabelledTexts], tokenizer: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        return [
            {**feature, "label": hot}
            for feature, hot in zip(
                self.features(examples, tokenizer), self.label_matrix(examples).tolist(), strict=True
            )
        ]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate([{**f, "label": 0} for f in features], pad_id)
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.float32)
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        logits = model(**model_inputs(batch)).logits
        per_label = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"], reduction="none")
        return per_label.mean(dim=-1).sum(), int(batch["labels"].shape[0])

    def normalise(self, logits: torch.Tensor) -> torch.Tensor:
        """Each label's own probability (sigmoid): they need not sum to 1."""
        return logits.float().sigmoid()

    # --- evaluation ---
    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        """Validation (during_training) tunes the thresholds on its own probabilities and scores with them;
        the model saved as the best keeps them. Any other split is scored with the thresholds held."""
        probs = self.probabilities(model, features, batch_size, pad_id).numpy()
        truth = self.truth(features)
        if during_training:
            self.thresholds = tune_thresholds(probs, truth).tolist()
        return self._scored(probs, truth, self.thresholds)

    def _scored(self, probs: np.ndarray, truth: np.ndarray, thresholds: Sequence[float]) -> Evaluation:
        clipped = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = float(-(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)).mean())
        predicted = decide(probs, thresholds)
        metrics = {"loss": loss, **multilabel_metrics(truth, predicted, self.labels)}
        for label, threshold in zip(self.labels, thresholds, strict=True):
            metrics["per_label"][label]["threshold"] = float(threshold)
        return Evaluation(metrics, predicted.tolist())

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        return multilabel_resampler(self.truth(features), np.asarray(evaluation.predictions))

    def threshold_of(self) -> dict[str, float]:
        """Each label's threshold, by label."""
        return dict(zip(self.labels, self.thresholds, strict=True))

    def chosen(self, scores: Sequence[tuple[str, float]]) -> list[str]:
        """The labels at or above their threshold, in the order of `scores`."""
        threshold = self.threshold_of()
        return [label for label, p in scores if p >= threshold[label]]

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        """Each text's labels (those at or above their threshold) and every label's probability."""
        return [
            {**self.shown_input(value), "labels": self.chosen(ranked), "probabilities": dict(ranked)}
            for value, ranked in zip(inputs, self.rank(model, inputs, pad_id), strict=True)
        ]

    def classify_item(self, scores: list[tuple[str, float]], top_k: int | None) -> dict[str, Any]:
        """As for classification (the most likely label and its probability first), plus `labels`: every label
        at or above its threshold; each score carries its label's threshold."""
        item = super().classify_item(scores, top_k)
        item["labels"] = self.chosen(scores)
        threshold = self.threshold_of()
        for row in item["scores"]:
            row["threshold"] = threshold[row["label"]]
        return item

    def output_categories(
        self, reference: list[dict[str, Any]], recent: list[dict[str, Any]]
    ) -> tuple[list[str], list[str], list[str]] | None:
        """Every label each answer gives (one category each), and NO_LABEL for an answer that gives none."""

        def given(outputs: list[dict[str, Any]]) -> list[str]:
            return [label for o in outputs for label in (o.get("labels") or [NO_LABEL])]

        return [*self.labels, NO_LABEL], given(reference), given(recent)

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        shown = "  ".join(f"{name} {prob:.3f}" for name, prob in list(row["probabilities"].items())[:top])
        return f"{self.params.separator.join(row['labels']) or '-'}\t{shown}\t{self.shown_text(row)}"

    def corrected_labels(self, label: str) -> list[str]:
        """The labels a correction names: a string of them split at task.separator (none: "")."""
        return [part.strip() for part in label.split(self.params.separator) if part.strip()]

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        if label is None:
            return None
        return {**self.input_record(logged_input), self.params.label_column: self.corrected_labels(label)}

    def record(self, example: LabelledTexts) -> dict[str, Any]:  # type: ignore[override]
        return {
            **self.input_record(self.model_input(example)),
            self.params.label_column: list(example.labels or ()),
        }

    # --- base model: frozen encoder + one logistic regression per label ---
    baseline_description = (
        "base = the frozen pretrained encoder with one logistic regression per label on its mean-pooled "
        "embeddings (one-vs-rest, fitted on the same training split), thresholds tuned on validation"
    )

    def label_matrix(self, examples: Sequence[LabelledTexts]) -> np.ndarray:
        """Examples x labels 0/1: each example's labels, in the order of self.labels."""
        index = {name: i for i, name in enumerate(self.labels)}
        out = np.zeros((len(examples), len(self.labels)), dtype=int)
        for row, ex in enumerate(examples):
            out[row, [index[label] for label in ex.labels or ()]] = 1
        return out

    def fit_baseline(
        self, resolved: Any, train: Sequence[LabelledTexts], path: Path, seed: int
    ) -> str | None:  # type: ignore[override]
        """The probe on the training split; its thresholds tuned on validation (0.5 without one)."""
        probe = MultiLabelProbe.fit(self._base_embeddings(resolved, train), self.label_matrix(train), seed)
        if self.validation:
            probs = probe.probabilities(self._base_embeddings(resolved, self.validation))
            probe.thresholds = tune_thresholds(probs, self.label_matrix(self.validation)).astype(np.float32)
        probe.save(path)
        return None

    def length_score(
        self,
        resolved: Any,
        train: Sequence[LabelledTexts],
        validation: Sequence[LabelledTexts],
        max_length: int,
        seed: int,
    ) -> dict[str, float] | None:  # type: ignore[override]
        """The probe's validation metrics (thresholds tuned there) reading the first `max_length` tokens."""
        features = self._base_embeddings(resolved, [*train, *validation], max_length)
        probe = MultiLabelProbe.fit(features[: len(train)], self.label_matrix(train), seed)
        probs, truth = probe.probabilities(features[len(train) :]), self.label_matrix(validation)
        return multilabel_metrics(truth, decide(probs, tune_thresholds(probs, truth)), self.labels)

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        """The head becomes the probe (one logistic regression per label is a linear layer with sigmoids)."""
        if self.params.pooling != "mean" or baseline_path is None:
            return False
        weight, bias = MultiLabelProbe.load(baseline_path).as_head(len(self.labels))
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(weight))
            model.classifier.bias.copy_(torch.from_numpy(bias))
        return True

    def evaluate_baseline(
        self, resolved: Any, examples: Sequence[LabelledTexts], path: Path
    ) -> Evaluation | None:  # type: ignore[override]
        if not path.is_file():
            return None
        probe = MultiLabelProbe.load(path)
        probs = probe.probabilities(self._base_embeddings(resolved, examples))
        return self._scored(probs, self.label_matrix(examples), probe.thresholds.tolist())
