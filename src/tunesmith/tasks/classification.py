"""Text classification: a text column and a label column (strings or integers) -> one label per text."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import torch
import torch.nn.functional as F
from pydantic import model_validator

from tunesmith.data.checks.view import ExampleView, TokenCount
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
from tunesmith.evaluation import baseline
from tunesmith.evaluation.bootstrap import Resampler, classification_resampler
from tunesmith.evaluation.forgetting import GeneralAbility, encoder_ability
from tunesmith.evaluation.metrics import HEADLINE, classification_metrics
from tunesmith.models.loader import load_pretrained, load_tokenizer
from tunesmith.models.pooled import (
    PooledClassifierLoader,
    save_sentence_transformer,
    sentence_transformer_logits,
)
from tunesmith.models.running import evaluating, move
from tunesmith.plugin import PluginParams
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import Correction, Evaluation, Task
from tunesmith.tasks.text_pairs import (
    TextInputParams,
    collate_inputs,
    joined,
    model_inputs,
    read_text,
    split_input,
    tokenize,
)


class ClassificationParams(TextInputParams):
    name: Literal["classification"] = "classification"
    label_column: str = "label"
    """Column or field holding the label: a string or an integer."""
    pooling: Literal["mean", "cls"] = "mean"
    """What the head reads: `mean` of the encoder's last hidden states (how sentence encoders such as MiniLM
    were trained, and what the base-model probe reads; models/pooled.py), or `cls`, the first token through
    the pre-trained pooler layer (transformers' AutoModelForSequenceClassification)."""
    class_weight: Literal["auto", "balanced", "none"] = "auto"
    """Weigh each class in the loss (and in the base-model probe) by n / (classes x its count), so a rare
    class counts as much as a common one ('balanced'); `auto`: balanced when the largest training class has
    more than IMBALANCED times the examples of the smallest."""
    head_init: Literal["probe", "random"] = "random"
    """Where training starts the head: `random`, transformers' initialisation (normal, std initializer_range;
    bias 0), or `probe`, the base model's linear probe (LP-FT: Kumar et al., ICLR 2022; needs pooling=mean).
    Either way, with pooling=mean step 0 validates the model with the probe as its head, i.e. the base, so
    the run can keep it (train.keep). `random` measured better on the quality panel (README, "Quality"): the
    probe fits the training split almost perfectly, which leaves little loss to move the encoder."""

    @model_validator(mode="after")
    def _probe_needs_mean(self) -> ClassificationParams:
        if self.head_init == "probe" and self.pooling != "mean":
            raise ValueError(
                "head_init=probe starts the head from the mean-pooled probe: it needs pooling=mean"
            )
        return self


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str | None
    path: Path
    line: int
    unit: str = "line"
    pair: str | None = None
    """The second text, where the task reads pairs (task.text_pair_column)."""


def _label_name(record: Record, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise record.error(f"label must be a string or an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise record.error(f"label {value!r} is not an integer or a string")
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise record.error(f"label must be a string or an integer, got {type(value).__name__}")
    if not value.strip():
        raise record.error("empty label", "empty")
    return value.strip()


IMBALANCED = 3.0
"""class_weight=auto weighs the classes when the largest has more than this many times the examples of the
smallest (bench/quality.py: the panel's sets with a rare class gained, the balanced ones did not move)."""


def class_weights(labels: Sequence[int], classes: int, mode: str) -> torch.Tensor | None:
    """sklearn's 'balanced' weights n / (classes x count) per class, or None when `mode` leaves them at 1."""
    counts = torch.bincount(torch.tensor(labels), minlength=classes).float()
    if mode == "none" or (mode == "auto" and counts.max() <= IMBALANCED * counts.min()):
        return None
    return len(labels) / (classes * counts.clamp_min(1))


def sorted_labels(names: set[str]) -> list[str]:
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


class ExportedLogits(torch.nn.Module):
    """Stands in for a classifier in the task's own serving code: its logits are an export's (the ONNX file's,
    computed by ONNX Runtime on the CPU)."""

    def __init__(self, scores: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]):
        super().__init__()
        self.scores = scores
        self.on_cpu = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # where evaluating() looks

    def forward(self, **inputs: torch.Tensor) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=self.scores(inputs)["logits"])


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    Params = ClassificationParams
    model_kinds = ("encoder",)
    default_metric = "macro_f1"
    default_max_length = None  # from the data (recipes/check.py)
    default_attention_dropout = 0.0
    """On the quality panel (MiniLM, seeds 1-3, README "Quality"; bench/results/quality-attention-dropout.json)
    attention dropout 0 instead of the model's 0.1 trained 1.01 to 1.31x as fast with 8 to 46% less peak
    memory (Debian long texts: 13.4 -> 17.5 samples/s, 4,453 -> 2,409 MB), since PyTorch's fused attention
    runs on CPU only without dropout; mean test macro-F1 moved -0.010 to +0.009 (tweets -0.010 with sd
    0.024 and 0.010, ACL sentences +0.009; the others within 0.002)."""
    default_model = "minilm"
    headline = HEADLINE
    endpoint = "classify"
    peft_task_type = "SEQ_CLS"
    params: ClassificationParams

    def __init__(self, params: PluginParams, model_cfg: Any):
        super().__init__(params, model_cfg)
        self.labels: list[str] = []
        self.class_weights: torch.Tensor | None = None
        """The loss's weight of each class (None: all 1), set by `fit` from the training labels."""

    # --- data ---
    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[LabelledText]:
        columns = {
            **self.input_columns(),
            "task.label_column": self.params.label_column,
        }
        return parse_each(
            require_columns(read_records(path, fmt, on_error), columns), self._example, on_error
        )

    def _example(self, record: Record) -> LabelledText:
        label = _label_name(record, require_field(record, self.params.label_column))
        return LabelledText(
            self.text_of(record), label, record.path, record.line, record.unit, self.pair_of(record)
        )

    # --- one text or a pair (tasks/text_pairs.py) ---
    @property
    def reads_pairs(self) -> bool:  # type: ignore[override]
        return self.params.text_pair_column is not None

    def input_columns(self) -> dict[str, str]:
        """The columns the input comes from, by the config key that names each."""
        columns = {"task.text_column": self.params.text_column}
        if self.params.text_pair_column is not None:
            columns["task.text_pair_column"] = self.params.text_pair_column
        return columns

    def text_of(self, record: Record) -> str:
        """The record's text (task.text_column): a non-empty string, or an error naming its line."""
        return read_text(record, self.params.text_column)

    def pair_of(self, record: Record) -> str | None:
        """The record's second text (task.text_pair_column), None where the task reads one text."""
        column = self.params.text_pair_column
        return None if column is None else read_text(record, column)

    def features(self, examples: Sequence[Any], tokenizer: Any) -> list[dict[str, Any]]:
        """Each example's input tokenized (a pair together, cut longest first), without its target."""
        pairs = [ex.pair or "" for ex in examples] if self.reads_pairs else None
        return tokenize(tokenizer, [ex.text for ex in examples], pairs, self.model_cfg.max_length)

    def input_text(self, example: Any) -> str:
        """The example's input as one text (a pair joined): what the data check and drift compare."""
        return joined(example.text, example.pair)

    def model_input(self, example: Any) -> Any:
        return example.text if example.pair is None else (example.text, example.pair)

    def traffic_text(self, logged_input: Any) -> str:
        if isinstance(logged_input, list):
            return joined(str(logged_input[0]), str(logged_input[1]))
        return str(logged_input)

    def input_record(self, value: Any) -> dict[str, Any]:
        """A logged or predicted input (a text, or a pair as a list) as record fields."""
        if isinstance(value, (list, tuple)) and self.params.text_pair_column is not None:
            return {self.params.text_column: value[0], self.params.text_pair_column: value[1]}
        return {self.params.text_column: value}

    def prediction_inputs(
        self, texts: list[str] | None, file: Path | None, stdin: TextIO | None
    ) -> list[Any]:
        """Texts, or for a pair run (text, pair) tuples: from a data file's two columns, or arguments and lines
        with the two texts separated by a tab."""
        if not self.reads_pairs:
            return super().prediction_inputs(texts, file, stdin)
        if file is not None and file.suffix.lower() != ".txt":
            if texts:
                raise UserError("give texts or --file, not both")
            return [
                (self.text_of(r), self.pair_of(r))
                for r in require_columns(read_records(file), self.input_columns())
            ]
        return [split_input(value, True) for value in super().prediction_inputs(texts, file, stdin)]

    def view(self, example: LabelledText) -> ExampleView:
        return ExampleView(
            example.path, example.line, example.unit, self.input_text(example), example.label, True
        )

    def measure(self, examples: Sequence[LabelledText]) -> list[TokenCount]:
        limit = self.model_cfg.max_length
        texts = [ex.text for ex in examples]
        if self.reads_pairs:
            ids = self.tokenizer(texts, [ex.pair or "" for ex in examples], truncation=False)["input_ids"]
        else:
            ids = self.tokenizer(texts, truncation=False)["input_ids"]
        return [TokenCount(len(i), len(i) > limit, cut="tokens of the longer text") for i in ids]

    def fit(self, train: list[LabelledText], others: dict[str, list[LabelledText]]) -> None:
        names = {ex.label for ex in train}
        if len(names) < 2:
            only = next(iter(names))
            raise DataError(
                train[0].path,
                None,
                f'every example has the label "{only}"; a classifier needs 2+',
                kind="labels",
            )
        self.labels = sorted_labels(names)
        self.class_weights = class_weights(
            [self.label_id(ex.label) for ex in train], len(self.labels), self.params.class_weight
        )
        for examples in others.values():
            self.check(examples)

    def check(self, examples: Sequence[LabelledText]) -> None:
        known = set(self.labels)
        for ex in examples:
            if ex.label is not None and ex.label not in known:
                raise DataError(
                    ex.path,
                    ex.line,
                    f'label "{ex.label}" never occurs in the training data '
                    f"(training labels: {', '.join(self.labels)})",
                    ex.unit,
                    "labels",
                )

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def restore(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])

    def label_id(self, name: str) -> int:
        return self.labels.index(name)

    # --- model ---
    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        pooled = self.params.pooling == "mean"
        return load_pretrained(
            PooledClassifierLoader if pooled else AutoModelForSequenceClassification,
            resolved,
            self.model_cfg,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={name: i for i, name in enumerate(self.labels)},
            **load_kwargs,
        )

    def base_model_key(self) -> tuple[Any, ...]:
        return (*super().base_model_key(), len(self.labels), self.params.pooling)

    @property
    def merged_layout(self) -> str:  # type: ignore[override]
        return "sentence-transformers" if self.params.pooling == "mean" else "transformers"

    def export_refusal(self, fmt: str) -> str | None:
        """A pair run's merged model reads pairs; sentence-transformers' SentenceTransformer reads one text,
        and its CrossEncoder (transformers' first-token classifier) does not pool the mean."""
        if self.reads_pairs and self.params.pooling == "mean" and fmt in ("merged", "sentence-transformers"):
            return (
                "this run reads pairs of texts through a mean-pooled head, which neither sentence-transformers "
                "(one text) nor a transformers classifier (first token) reads: export --format onnx (it takes "
                "token_type_ids) or --format adapter; or train with task.pooling=cls for a merged folder "
                "sentence-transformers' CrossEncoder loads"
            )
        return None

    def save_sentence_transformer(self, model: torch.nn.Module, folder: Path) -> None:
        save_sentence_transformer(model, self.tokenizer, folder, self.model_cfg.max_length)

    def sentence_transformer_scores(self, folder: Path, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"logits": sentence_transformer_logits(folder, texts)}

    def encode(self, examples: Sequence[LabelledText], tokenizer: Any) -> list[dict[str, Any]]:
        index = {name: i for i, name in enumerate(self.labels)}
        return [
            {**feature, "label": index[ex.label] if ex.label is not None else -1}
            for feature, ex in zip(self.features(examples, tokenizer), examples, strict=True)
        ]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        labels = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return {**collate_inputs(features, pad_id), "labels": labels}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        logits = model(**model_inputs(batch)).logits
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits.float(), batch["labels"], weight=weight, reduction="sum")
        return loss, int(batch["labels"].numel())

    def probabilities(
        self, model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
    ) -> torch.Tensor:
        """Class probabilities in the order of `features`, computed in length-sorted batches."""
        probs = torch.empty((len(features), len(self.labels)))
        with evaluating(model) as device:
            for idx, chunk in self.length_sorted_batches(features, batch_size):
                batch = move(self.collate(chunk, pad_id), device)
                probs[idx] = self.normalise(model(**model_inputs(batch)).logits).cpu()
        return probs

    def normalise(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the head's logits: one softmax over the classes."""
        return logits.float().softmax(-1)

    def rank(
        self, model: torch.nn.Module, texts: Sequence[Any], pad_id: int, batch_size: int = 64
    ) -> list[list[tuple[str, float]]]:
        """For each text (a pair run: each (text, pair)), (label, probability) pairs from most to least
        likely."""
        if not texts:
            return []
        examples = [self.unlabelled(text, i + 1) for i, text in enumerate(texts)]
        probs = self.probabilities(model, self.encode(examples, self.tokenizer), batch_size, pad_id)
        ranked = probs.sort(dim=-1, descending=True)
        return [
            [(self.labels[j], float(p)) for p, j in zip(values.tolist(), indices.tolist(), strict=True)]
            for values, indices in zip(ranked.values, ranked.indices, strict=True)
        ]

    def classify_item(self, scores: list[tuple[str, float]], top_k: int | None) -> dict[str, Any]:
        """What /v1/classify answers for one text, from its (label, probability) pairs, most likely first:
        the label, its probability as the confidence, and the `top_k` first scores (all without)."""
        shown = scores[:top_k] if top_k else scores
        return {
            "label": scores[0][0],
            "confidence": scores[0][1],
            "scores": [{"label": name, "score": p} for name, p in shown],
        }

    def serve_inputs(
        self, model: torch.nn.Module, inputs: list[Any], pad_id: int, batch_size: int
    ) -> list[Any]:
        return self.rank(model, inputs, pad_id, batch_size)

    def served_outputs(self, model: torch.nn.Module, texts: list[Any], pad_id: int) -> list[dict[str, Any]]:
        return [self.classify_item(scores, None) for scores in self.rank(model, texts, pad_id)]

    serves_from_export = True

    def serve_exported(
        self,
        scores: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        inputs: list[Any],
        pad_id: int,
        batch_size: int,
    ) -> list[Any]:
        """The served answers with the export's logits in the model's place (every task of this family reads
        the model's logits alone: labels, multilabel shares, regression scores)."""
        return self.serve_inputs(ExportedLogits(scores), inputs, pad_id, batch_size)

    def output_categories(
        self, reference: list[dict[str, Any]], recent: list[dict[str, Any]]
    ) -> tuple[list[str], list[str], list[str]] | None:
        """The predicted label of each answer."""
        return list(self.labels), [o["label"] for o in reference], [str(o.get("label")) for o in recent]

    def unlabelled(self, value: Any, line: int) -> Any:
        """A text (a pair run: a (text, pair) pair, or the two separated by a tab) to predict, as this task's
        example without a label."""
        text, pair = split_input(value, self.reads_pairs)
        return LabelledText(text, None, Path("<input>"), line, pair=pair)

    def shown_input(self, value: Any) -> dict[str, Any]:
        """A prediction's input as `predict` shows it: the text, and the pair's second text."""
        text, pair = split_input(value, self.reads_pairs)
        return {"text": text} if pair is None else {"text": text, "pair": pair}

    def shown_text(self, row: dict[str, Any]) -> str:
        """A `predict` row's input on one line: the text, and a pair's second text after a tab."""
        return row["text"] if "pair" not in row else f"{row['text']}\t{row['pair']}"

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        return [
            {**self.shown_input(value), "label": ranked[0][0], "probabilities": dict(ranked)}
            for value, ranked in zip(inputs, self.rank(model, inputs, pad_id), strict=True)
        ]

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        shown = "  ".join(f"{name} {prob:.3f}" for name, prob in list(row["probabilities"].items())[:top])
        return f"{row['label']}\t{shown}\t{self.shown_text(row)}"

    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        probs = self.probabilities(model, features, batch_size, pad_id)
        truth = torch.tensor([f["label"] for f in features])
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), truth).item()
        preds = probs.argmax(-1).tolist()
        metrics = {"loss": loss, **classification_metrics(truth.tolist(), preds, self.labels)}
        return Evaluation(metrics, preds)

    def general_ability(self, model: torch.nn.Module) -> GeneralAbility | None:
        return encoder_ability(model, self.tokenizer, self.model_cfg.max_length)

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        truth = [f["label"] for f in features]
        return classification_resampler(truth, evaluation.predictions, len(self.labels))

    def record(self, example: LabelledText) -> dict[str, Any]:
        return {**self.input_record(self.model_input(example)), self.params.label_column: example.label}

    def correction_refusal(self, correction: Correction, logged_input: Any) -> str | None:
        """The right label, one of the run's."""
        if correction.label is None:
            return "the model gave a label: send the right label"
        unknown = [name for name in self.corrected_labels(correction.label) if name not in self.labels]
        if unknown:
            return f"unknown label {unknown[0]!r}; labels: {', '.join(self.labels)}"
        return None

    def corrected_labels(self, label: str) -> list[str]:
        """The labels a correction names: the one label."""
        return [label]

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        return {**self.input_record(logged_input), self.params.label_column: label}

    # --- base model: frozen encoder + linear head ---
    baseline_description = baseline.DESCRIPTION

    def _base_embeddings(
        self, resolved: Any, examples: Sequence[LabelledText], max_length: int | None = None
    ) -> Any:
        from transformers import AutoModel

        encoder = load_pretrained(AutoModel, resolved, self.model_cfg)
        tokenizer = load_tokenizer(resolved, self.model_cfg)
        pairs = [ex.pair or "" for ex in examples] if self.reads_pairs else None
        features = tokenize(
            tokenizer, [ex.text for ex in examples], pairs, max_length or self.model_cfg.max_length
        )
        return baseline.embed_ids(
            encoder,
            [f["input_ids"] for f in features],
            tokenizer.pad_token_id or 0,
            max_tokens=self.model_cfg.inference_batch_tokens,
            token_types=[f["token_type_ids"] for f in features] if "token_type_ids" in features[0] else None,
        )

    def _fit_probe(self, features: Any, train: Sequence[LabelledText], seed: int) -> baseline.LinearProbe:
        weights = None if self.class_weights is None else self.class_weights.numpy()
        labels = [self.label_id(ex.label) for ex in train]
        return baseline.LinearProbe.fit(features, labels, seed, weights)

    def fit_baseline(self, resolved: Any, train: Sequence[LabelledText], path: Path, seed: int) -> str | None:
        self._fit_probe(self._base_embeddings(resolved, train), train, seed).save(path)
        return None

    def length_score(
        self,
        resolved: Any,
        train: Sequence[LabelledText],
        validation: Sequence[LabelledText],
        max_length: int,
        seed: int,
    ) -> dict[str, float] | None:
        """The probe's validation metrics reading the first `max_length` tokens of each text."""
        features = self._base_embeddings(resolved, [*train, *validation], max_length)
        probe = self._fit_probe(features[: len(train)], train, seed)
        truth = [self.label_id(ex.label) for ex in validation]
        return classification_metrics(truth, probe.predict(features[len(train) :]), self.labels)

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        """The head becomes the probe, so the model computes exactly what the base-model probe does (step 0's
        validation; training then starts from `training_head`)."""
        if self.params.pooling != "mean" or baseline_path is None:
            return False
        weight, bias = baseline.LinearProbe.load(baseline_path).as_head(len(self.labels))
        head = model.classifier
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weight))
            head.bias.copy_(torch.from_numpy(bias))
        return True

    def training_head(self, model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor] | None:
        """head_init=random: fresh head weights (transformers' initialisation, from `seed`) by the names of
        the trainable head parameters, which training starts from once step 0 has validated the probe."""
        if self.params.head_init != "random" or self.params.pooling != "mean":
            return None  # pooling=cls: init_head left transformers' random head in place
        generator = torch.Generator().manual_seed(seed)
        std = getattr(model.config, "initializer_range", 0.02)
        fresh = {}
        for name, p in model.named_parameters():
            if p.requires_grad and "classifier" in name.split("."):
                values = (
                    torch.zeros(p.shape) if p.ndim == 1 else torch.randn(p.shape, generator=generator) * std
                )
                fresh[name] = values.to(p.dtype)
        return fresh

    def evaluate_baseline(
        self, resolved: Any, examples: Sequence[LabelledText], path: Path
    ) -> Evaluation | None:
        if not path.is_file():
            return None
        preds = baseline.LinearProbe.load(path).predict(self._base_embeddings(resolved, examples))
        truth = [self.label_id(ex.label) for ex in examples]
        return Evaluation(classification_metrics(truth, preds, self.labels), preds)
