"""Regression: a text and one number (a risk score, a rating, a time to resolve).

The model is the classifier of tasks/classification.py (an encoder, the mean of its last hidden states through
a linear head) with one output. The head learns the target normalised by the training split's mean and
standard deviation (`task.normalise`); the model's config holds that scale and shift as a fixed affine step
after the head (models/pooled.py), so the model itself outputs the target's own units, and so do `predict`,
/v1/score, and every export, with nothing to undo. The loss is the mean squared error of the normalised
target, so the learning rate means the same whatever the target's units.

The base model is the frozen encoder with a ridge regression on its mean-pooled embeddings, its penalty chosen
by leave-one-out error on the training split; it is also the head step 0 validates, so a run keeps it when
tuning does not beat it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

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
from tunesmith.errors import DataError, UserError
from tunesmith.evaluation.baseline import RidgeProbe
from tunesmith.evaluation.bootstrap import Resampler
from tunesmith.evaluation.regression import (
    REGRESSION_HEADLINE,
    regression_metrics,
    regression_resampler,
    residual_bins,
)
from tunesmith.models.loader import load_pretrained
from tunesmith.models.pooled import OUTPUT_KEY, PooledClassifierLoader
from tunesmith.models.running import evaluating, move
from tunesmith.plugin import PluginParams
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import Correction, Evaluation
from tunesmith.tasks.classification import Classification
from tunesmith.tasks.text_pairs import TextInputParams, model_inputs, split_input


class RegressionParams(TextInputParams):
    name: Literal["regression"] = "regression"
    target_column: str = "target"
    """Column or field holding the number to predict (an integer, a decimal, or a string of one)."""
    normalise: bool = True
    """Train the head on the target minus the training mean, over the training standard deviation, so the
    loss and the learning rate mean the same whatever the target's units (a price in dollars and a score out
    of 5 alike); predictions come back in the target's units either way. false: the raw target."""
    head_init: Literal["probe", "random"] = "probe"
    """Where training starts the head: the base model's ridge regression (LP-FT), or transformers' random
    initialisation (the prediction then starts at the training mean). Step 0 validates the ridge either way.
    `probe` measured on configs/regression-sentiment.yaml (README, "Regression")."""
    pooling: Literal["mean"] = "mean"
    """What the head reads: the mean of the encoder's last hidden states (what the base model's ridge
    reads; the one pooling whose model carries the target's scale)."""


@dataclass(frozen=True)
class ScoredText:
    text: str
    value: float | None
    path: Path
    line: int
    unit: str = "line"
    pair: str | None = None


def parse_target(record: Record, column: str, value: Any) -> float:
    """A finite number from an int, a float or a string of one; anything else is an error of the line."""
    if isinstance(value, bool) or value is None:
        raise record.error(f'target in "{column}" must be a number, got {value!r}', "invalid")
    if isinstance(value, str):
        if not value.strip():
            raise record.error(f'empty target in "{column}"', "empty")
        try:
            number = float(value.strip())
        except ValueError:
            raise record.error(f'target in "{column}" is not a number: {value.strip()!r}') from None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise record.error(f'target in "{column}" must be a number, got {type(value).__name__}')
    if not math.isfinite(number):
        raise record.error(f'target in "{column}" is not a finite number: {value!r}')
    return number


DRIFT_BINS = 10
"""The score distribution's bins in the drift report (deciles of the reference's scores), PSI's usual ten."""


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@TASKS.register("regression")
class Regression(Classification):
    name = "regression"
    Params = RegressionParams  # type: ignore[assignment]
    default_metric = "rmse"
    headline = REGRESSION_HEADLINE
    endpoint = "score"
    params: RegressionParams  # type: ignore[assignment]

    def __init__(self, params: PluginParams, model_cfg: Any):
        super().__init__(params, model_cfg)
        self.shift, self.scale = 0.0, 1.0
        """What the head's output is multiplied by (scale) and then added to (shift): the training split's
        standard deviation and mean with task.normalise, else 1 and 0."""

    # --- data ---
    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[ScoredText]:
        columns = {**self.input_columns(), "task.target_column": self.params.target_column}
        return parse_each(
            require_columns(read_records(path, fmt, on_error), columns), self._example, on_error
        )

    def _example(self, record: Record) -> ScoredText:  # type: ignore[override]
        column = self.params.target_column
        value = parse_target(record, column, require_field(record, column))
        return ScoredText(
            self.text_of(record), value, record.path, record.line, record.unit, self.pair_of(record)
        )

    def view(self, example: ScoredText) -> ExampleView:  # type: ignore[override]
        return ExampleView(
            example.path,
            example.line,
            example.unit,
            self.input_text(example),
            None,
            True,
            value=example.value,
        )

    def fit(self, train: list[ScoredText], others: dict[str, list[ScoredText]]) -> None:  # type: ignore[override]
        values = np.asarray([ex.value for ex in train], dtype=np.float64)
        if np.ptp(values) == 0:
            raise DataError(
                train[0].path,
                None,
                f'every training example has the target {values[0]:g} in "{self.params.target_column}": '
                "there is nothing to learn",
                kind="labels",
            )
        self.labels = [self.params.target_column]
        if self.params.normalise:
            self.shift, self.scale = float(values.mean()), float(values.std())

    def check(self, examples: Sequence[ScoredText]) -> None:  # type: ignore[override]
        """Any finite number is a target (the data check flags those far from training's)."""

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "shift": self.shift, "scale": self.scale}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.shift, self.scale = float(state["shift"]), float(state["scale"])

    def unlabelled(self, value: Any, line: int) -> ScoredText:
        text, pair = split_input(value, self.reads_pairs)
        return ScoredText(text, None, Path("<input>"), line, pair=pair)

    # --- model ---
    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        return load_pretrained(
            PooledClassifierLoader,
            resolved,
            self.model_cfg,
            num_labels=1,
            id2label={0: self.params.target_column},
            label2id={self.params.target_column: 0},
            **{OUTPUT_KEY: {"scale": self.scale, "shift": self.shift}},
            **load_kwargs,
        )

    def base_model_key(self) -> tuple[Any, ...]:
        return (*super().base_model_key(), self.shift, self.scale)

    def encode(self, examples: Sequence[ScoredText], tokenizer: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        return [
            {**feature, "label": ex.value if ex.value is not None else math.nan}
            for feature, ex in zip(self.features(examples, tokenizer), examples, strict=True)
        ]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate([{**f, "label": 0} for f in features], pad_id)
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.float32)
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Squared error of the normalised target (the model's output is in the target's units)."""
        out = model(**model_inputs(batch)).logits
        residual = (out[:, 0].float() - batch["labels"]) / self.scale
        return (residual**2).sum(), int(batch["labels"].numel())

    def normalise(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's output as it is: the target in its units."""
        return logits.float()

    def scores(
        self, model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
    ) -> np.ndarray:
        """The predicted target of each feature, in the target's units."""
        out = np.empty(len(features), dtype=np.float64)
        with evaluating(model) as device:
            for idx, chunk in self.length_sorted_batches(features, batch_size):
                batch = move(self.collate(chunk, pad_id), device)
                out[idx] = model(**model_inputs(batch)).logits[:, 0].float().cpu().numpy()
        return out

    def score_texts(
        self, model: torch.nn.Module, texts: Sequence[Any], pad_id: int, batch_size: int = 64
    ) -> list[float]:
        """Each text's (a pair run: each (text, pair)'s) predicted target (what `predict` and /v1/score
        answer)."""
        if not texts:
            return []
        examples = [self.unlabelled(text, i + 1) for i, text in enumerate(texts)]
        return self.scores(model, self.encode(examples, self.tokenizer), batch_size, pad_id).tolist()

    def rank(
        self, model: torch.nn.Module, texts: Sequence[str], pad_id: int, batch_size: int = 64
    ) -> list[list[tuple[str, float]]]:
        raise UserError("a regression run gives scores, not labels: /v1/score, or `tunesmith predict`")

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        return [
            {**self.shown_input(value), "score": score}
            for value, score in zip(inputs, self.score_texts(model, inputs, pad_id), strict=True)
        ]

    def serve_inputs(
        self, model: torch.nn.Module, inputs: list[Any], pad_id: int, batch_size: int
    ) -> list[Any]:
        return self.score_texts(model, inputs, pad_id, batch_size)

    def served_outputs(self, model: torch.nn.Module, texts: list[Any], pad_id: int) -> list[dict[str, Any]]:
        return [{"score": value} for value in self.score_texts(model, texts, pad_id)]

    def output_categories(
        self, reference: list[dict[str, Any]], recent: list[dict[str, Any]]
    ) -> tuple[list[str], list[str], list[str]] | None:
        """Each score's bin among DRIFT_BINS equal-count bins of the reference's scores (the PSI of the score
        distribution)."""
        ref = np.asarray([o["score"] for o in reference], dtype=np.float64)
        if not len(ref):
            return None
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]))
        names = [f"bin {i + 1}" for i in range(len(edges) + 1)]
        rec = np.asarray([float(o.get("score", math.nan)) for o in recent], dtype=np.float64)
        rec = rec[np.isfinite(rec)]
        return (
            names,
            [names[i] for i in np.searchsorted(edges, ref, side="right")],
            [names[i] for i in np.searchsorted(edges, rec, side="right")],
        )

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        return f"{row['score']:.4g}\t{self.shown_text(row)}"

    # --- evaluation ---
    def truth(self, features: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.asarray([f["label"] for f in features], dtype=np.float64)

    def _scored(self, predicted: np.ndarray, truth: np.ndarray) -> Evaluation:
        loss = float((((predicted - truth) / self.scale) ** 2).mean()) if len(truth) else 0.0
        metrics = {"loss": loss, **regression_metrics(predicted, truth)}
        metrics["residuals"] = residual_bins(predicted, truth)
        return Evaluation(metrics, predicted.tolist())

    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        return self._scored(self.scores(model, features, batch_size, pad_id), self.truth(features))

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        return regression_resampler(evaluation.predictions, self.truth(features))

    def record(self, example: ScoredText) -> dict[str, Any]:  # type: ignore[override]
        return {**self.input_record(self.model_input(example)), self.params.target_column: example.value}

    def correction_refusal(self, correction: Correction, logged_input: Any) -> str | None:
        """The right number, as `label`."""
        if correction.label is None or _finite(correction.label) is None:
            return f"the model gave a number: send the right {self.params.target_column} as label (a number)"
        return None

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        """A correction of a score is its right value, sent as `label` (a number or a string of one)."""
        value = None if label is None else _finite(label)
        if value is None:
            return None
        return {**self.input_record(logged_input), self.params.target_column: value}

    # --- base model: frozen encoder + ridge regression ---
    baseline_description = (
        "base = the frozen pretrained encoder with a ridge regression on its mean-pooled embeddings (penalty "
        "chosen by leave-one-out error on the same training split)"
    )

    def _normalised(self, examples: Sequence[ScoredText]) -> np.ndarray:
        return (np.asarray([ex.value for ex in examples], dtype=np.float64) - self.shift) / self.scale

    def fit_baseline(self, resolved: Any, train: Sequence[ScoredText], path: Path, seed: int) -> str | None:  # type: ignore[override]
        probe = RidgeProbe.fit(self._base_embeddings(resolved, train), self._normalised(train))
        probe.save(path)
        return None

    def length_score(
        self,
        resolved: Any,
        train: Sequence[ScoredText],
        validation: Sequence[ScoredText],
        max_length: int,
        seed: int,
    ) -> dict[str, float] | None:  # type: ignore[override]
        """The ridge's validation metrics reading the first `max_length` tokens of each text."""
        features = self._base_embeddings(resolved, [*train, *validation], max_length)
        probe = RidgeProbe.fit(features[: len(train)], self._normalised(train))
        predicted = probe.predict(features[len(train) :]) * self.scale + self.shift
        return regression_metrics(predicted, [ex.value for ex in validation])

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        """The head becomes the ridge regression (fitted on the normalised target, as the head learns it)."""
        if baseline_path is None:
            return False
        weight, bias = RidgeProbe.load(baseline_path).as_head(1)
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(weight))
            model.classifier.bias.copy_(torch.from_numpy(bias))
        return True

    def evaluate_baseline(
        self, resolved: Any, examples: Sequence[ScoredText], path: Path
    ) -> Evaluation | None:  # type: ignore[override]
        if not path.is_file():
            return None
        predicted = RidgeProbe.load(path).predict(self._base_embeddings(resolved, examples))
        truth = np.asarray([ex.value for ex in examples], dtype=np.float64)
        return self._scored(predicted.astype(np.float64) * self.scale + self.shift, truth)
