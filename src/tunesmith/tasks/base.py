"""What every task provides to the loop, the evaluator and `predict`. The loop knows nothing else."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

import torch

from tunesmith.data.batch_order import epoch_batches
from tunesmith.data.checks.view import ExampleView, TokenCount
from tunesmith.data.inputs import read_texts
from tunesmith.data.readers import NO_ROWS, FileFormat, OnError
from tunesmith.data.token_batches import token_capped_batches
from tunesmith.errors import DataError, UserError
from tunesmith.evaluation.bootstrap import Resampler
from tunesmith.evaluation.forgetting import GeneralAbility
from tunesmith.plugin import PluginParams
from tunesmith.sections import ModelConfig


@dataclass
class Splits:
    """Examples per split, with where each came from (for messages and the run summary)."""

    train: list[Any]
    validation: list[Any]
    test: list[Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Correction:
    """What /v1/feedback says the right answer to a logged request was: exactly one of these is set."""

    label: str | None = None
    """The right label (classification; several joined for multi-label) or number (regression)."""
    answer: str | None = None
    """A better answer (text-writing tasks)."""
    rating: str | None = None
    """"up" or "down" on the answer given (chat)."""
    entities: list[dict[str, Any]] | None = None
    """The text's right entities, {"start", "end", "label"} each (token classification; empty: none)."""


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    predictions: list[Any]
    example_scores: dict[str, list[float]] = field(default_factory=dict)
    """Per-example scores behind the metrics that are their mean (the bootstrap resamples these)."""


class Task(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    model_kinds: ClassVar[tuple[str, ...]]
    """Model kinds (encoder, causal, seq2seq) this task can fine-tune."""
    default_metric: ClassVar[str]
    """Validation metric that picks the best checkpoint when train.metric is empty."""
    default_model: ClassVar[str]
    """model.name when the config leaves it empty: a packaged model suited to the task."""
    default_group_by_length: ClassVar[bool] = True
    """train.group_by_length when the config leaves it empty."""
    default_max_length: ClassVar[int | None]
    """model.max_length when the config leaves it empty; None: chosen from the training data's lengths when
    the data is checked (recipes/check.py)."""
    default_attention_dropout: ClassVar[float | Literal["model"]] = "model"
    """model.attention_dropout when the config leaves it empty; `model`: the model's own (config.json)."""
    headline: ClassVar[tuple[str, ...]]
    """Metrics shown in tables (base vs tuned); the JSON output carries everything."""
    scores_input_positions: ClassVar[bool] = False
    """True where the head predicts positions of the input (extractive QA's answer span), which anything put
    in front of the input would shift."""
    reads_pairs: bool = False
    """True where each input is a pair of texts encoded together (task.text_pair_column; tasks/text_pairs.py):
    exports are then checked on pairs and take token type ids."""
    endpoint: ClassVar[str] = "none"
    """What the server answers with this task's model: `classify` (/v1/classify), `score` (/v1/score),
    `entities` (/v1/entities), `embeddings` (/v1/embeddings), `chat` (the OpenAI-compatible chat and
    completions) or `none` (not served)."""
    peft_task_type: ClassVar[str | None] = None
    """peft's task type for the task's new head, which it then trains and saves (`modules_to_save`): SEQ_CLS,
    QUESTION_ANS; None where the task adds no head (text-writing tasks reuse the pretrained LM head)."""

    def __init__(self, params: PluginParams, model_cfg: ModelConfig):
        self.params = params
        self.model_cfg = model_cfg
        self.tokenizer: Any = None
        self.model_kind = self.model_kinds[0]

    @classmethod
    def variant_for(cls, kind: str | None) -> type[Task]:
        """The class that handles this task on a model of `kind` (a task may have one per kind)."""
        return cls

    @classmethod
    def metric_for(cls, params: PluginParams, metric: str | None) -> str:
        """train.metric: the configured one, else the task's default. A task refuses here, before any work,
        a metric its validation will not compute with these params."""
        return metric or cls.default_metric

    def set_model_kind(self, kind: str) -> None:
        """Told the model's kind (encoder, causal, seq2seq) before anything is encoded."""
        self.model_kind = kind

    def use_tokenizer(self, tokenizer: Any) -> None:
        """Called once with the tokenizer before encoding; a task may complete it (pad token, chat
        template) and the completed tokenizer is what the run folder saves."""
        self.tokenizer = tokenizer

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Called with the model (method applied) before training or inference."""

    @property
    def needs_reference_model(self) -> bool:
        """True where the loss compares the model with its untouched self (preference tuning's reference),
        which an adapter method provides by switching its adapter off."""
        return False

    @property
    def converses(self) -> bool:
        """True where `tunesmith chat` can talk to the model: a decoder writing replies in a chat template."""
        return False

    # --- tunesmith predict ---
    def prediction_inputs(
        self, texts: list[str] | None, file: Path | None, stdin: TextIO | None
    ) -> list[Any]:
        """What `tunesmith predict` feeds the model: by default one text per argument, per line of a .txt file
        or stdin, or per record's text column."""
        return read_texts(texts, file, stdin, text_column=getattr(self.params, "text_column", "text"))

    def use_corpus(self, path: Path, fmt: str | FileFormat = "auto") -> str | None:
        """Search the documents of `path` in evaluation and prediction (retrieval tasks); others refuse. May
        return a line for the user about how the corpus will be searched."""
        raise UserError(f"--corpus is for embedding runs; this is a {self.name} run")

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        """One JSON-ready row per input: what `tunesmith predict --json` prints."""
        raise UserError(f"`tunesmith predict` has nothing to do for a {self.name} run")

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        """A row of `predict` as one line of plain output (`top`: how many ranked labels to show)."""
        return "\t".join(str(value) for value in row.values())

    # --- data ---
    @abstractmethod
    def examples(self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None) -> Iterator[Any]:
        """Examples streamed from a file. A bad record raises DataError with file and line, or, given
        `on_error`, is passed to it and skipped (the data check lists every problem in one pass)."""

    def read(self, path: Path, fmt: str | FileFormat) -> list[Any]:
        """All examples of a file; the first problem raises, and so does a file without any example."""
        examples = list(self.examples(path, fmt))
        if not examples:
            raise DataError(path, None, NO_ROWS, kind="no_rows")
        return examples

    @abstractmethod
    def view(self, example: Any) -> ExampleView:
        """What the data check looks at: input text, target, where the example came from."""

    @abstractmethod
    def measure(self, examples: Sequence[Any]) -> list[TokenCount]:
        """Each example's length in the tokenizer's tokens (set by `use_tokenizer`) against max_length."""

    @abstractmethod
    def fit(self, train: list[Any], others: dict[str, list[Any]]) -> None:
        """Learn what the task needs from the training data (e.g. the label set) and check other splits."""

    def check(self, examples: Sequence[Any]) -> None:
        """Check examples of another split (or an eval file) against what `fit` learnt."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What `fit` learnt, saved in the run folder to rebuild the task later."""

    @abstractmethod
    def restore(self, state: dict[str, Any]) -> None: ...

    def model_state(self) -> dict[str, Any] | None:
        """What the task learnt along with the weights it holds (multi-label: the thresholds tuned by the
        validation that chose them); written with each best model (its tunesmith.json), read back by
        restore_model_state. None: nothing."""
        return None

    def restore_model_state(self, state: dict[str, Any]) -> None:
        """Take back what model_state gave, from the model folder a run loads."""

    # --- model ---
    @abstractmethod
    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        """The pretrained model with this task's head, ready for a method to make trainable (`load_kwargs`:
        the method's extra `from_pretrained` arguments, e.g. a quantization config)."""

    @abstractmethod
    def encode(self, examples: Sequence[Any], tokenizer: Any) -> list[dict[str, Any]]:
        """Tokenized features, unpadded; each has a `length` used for batching."""

    @abstractmethod
    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """Pad a batch to its own longest example (never to max_length)."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Summed loss of the batch and the count it sums over (examples or target tokens)."""

    @abstractmethod
    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        """Metrics (and predictions) on encoded examples; `during_training` allows a cheaper version
        (e.g. generating on a capped subset) for validation between steps."""

    def shown_examples(
        self, features: Sequence[dict[str, Any]], tuned: Evaluation, base: Evaluation | None
    ) -> list[dict[str, Any]]:
        """A few examples with the tuned (and base) outputs, for reports; none by default."""
        return []

    # --- the base model, for "tuned vs base" ---
    baseline_description: ClassVar[str] = ""

    def fit_baseline(self, resolved: Any, train: Sequence[Any], path: Path, seed: int) -> str | None:
        """Prepare what scoring the untuned base model needs (saved at `path`); nothing by default. Returns a
        line for the user about the base model on the training data, if the task has one to say."""
        return None

    def length_score(
        self, resolved: Any, train: Sequence[Any], validation: Sequence[Any], max_length: int, seed: int
    ) -> dict[str, float] | None:
        """The base model's validation metrics when it reads the first `max_length` tokens of each input,
        fitted on `train` as `fit_baseline` fits it: how a run left to choose model.max_length picks it
        (recipes/prepare.py). None: the task cannot tell, and the data's length stands."""
        return None

    merged_layout: str = "transformers"
    """How `export --format merged` writes the model: `transformers` (a plain Auto* folder) or
    `sentence-transformers` (save_sentence_transformer: a pooled head transformers has no class for, or a
    sentence encoder)."""

    def export_refusal(self, fmt: str) -> str | None:
        """Why this run's model cannot be exported as `fmt` (merged, adapter, onnx...), known from the task's
        settings alone; None: the task has no objection (the method and the format may still refuse)."""
        return None

    def save_sentence_transformer(self, model: torch.nn.Module, folder: Path) -> None:
        """Write `model` (merged, plain) as a sentence-transformers folder; only where merged_layout says so."""
        raise UserError(f"a {self.name} run has no sentence-transformers layout")

    def sentence_transformer_scores(self, folder: Path, texts: list[str]) -> dict[str, torch.Tensor]:
        """What the folder save_sentence_transformer wrote gives for `texts`, computed by the
        sentence-transformers library itself, under the keys of `export_scores`."""
        raise UserError(f"a {self.name} run has no sentence-transformers layout")

    def export_scores(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """What an export of this task's model must reproduce on a padded batch of texts (export/probe.py):
        by default the scores it outputs (class logits, span logits)."""
        with torch.no_grad():
            out = model(**batch)
        return {k: out[k].float() for k in ("logits", "start_logits", "end_logits") if k in out}

    def base_model_key(self) -> tuple[Any, ...]:
        """What the model `load_model` builds depends on besides the weights' source: runs with equal keys
        (and method) can share one loaded base with an adapter each (serving/pool.py)."""
        return (self.name, self.model_kind)

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        """Start the task's new head, if it has one, from what `fit_baseline` saved at `baseline_path` (None:
        nothing was saved), before the method makes the model trainable. True if `model` now computes what
        the base model does (the base-vs-tuned baseline), so that the untrained model can compete with the
        checkpoints (train.keep); by default a new head starts at random."""
        return False

    def training_head(self, model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor] | None:
        """Weights (by `model`'s parameter names, after the method applied) that training starts the head from
        once step 0 has validated the model `init_head` made; None: training starts from that model."""
        return None

    couples_batch: ClassVar[bool] = False
    """True where an example's loss depends on the other examples of its batch (in-batch negatives): a batch
    is then never split into several passes (train.max_batch_tokens), which would change the loss."""

    def epoch_batches(
        self,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        seed: int,
        epoch: int,
        group_by_length: bool,
    ) -> list[list[int]]:
        """The training batches of one epoch (indices into `features`), a pure function of seed and epoch so a
        resumed run sees the same order: by default shuffled, grouped by length when asked
        (data/batch_order.py)."""
        lengths = [f["length"] for f in features]
        return epoch_batches(lengths, batch_size, seed, epoch, group_by_length)

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Padded tokens of a collated batch: what the time of a training step grows with (the planner)."""
        return int(batch["input_ids"].numel())

    def length_sorted_batches(
        self, features: Sequence[dict[str, Any]], batch_size: int
    ) -> Iterator[tuple[list[int], list[dict[str, Any]]]]:
        """Inference batches of similar length, longest first, of at most `batch_size` examples and
        model.inference_batch_tokens padded tokens (data/token_batches.py); yields indices too."""
        lengths = [f["length"] for f in features]
        for idx in token_capped_batches(lengths, batch_size, self.model_cfg.inference_batch_tokens):
            yield idx, [features[i] for i in idx]

    def evaluate_baseline(self, resolved: Any, examples: Sequence[Any], path: Path) -> Evaluation | None:
        """The base model on `examples`, with the same metric code as `evaluate`; None if there is none."""
        return None

    def general_ability(self, model: torch.nn.Module) -> GeneralAbility | None:
        """`model`'s scores on the general reference (evaluation/forgetting.py), measured alike on the base
        and the tuned model; None where the task has no such measure."""
        return None

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        """`evaluation`'s headline metrics on resamples of `features` (for the bootstrap interval of tuned vs
        base); None where they cannot be resampled."""
        return None

    # --- serving and re-tuning (monitoring/) ---
    record_params: ClassVar[dict[str, Any]] = {}
    """Task keys a retune sets so that the files `record` writes read back (e.g. chat's format)."""

    def model_input(self, example: Any) -> Any:
        """What the model is given for `example` at prediction time (`predict`'s and the server's input: a
        text, or a (text, pair) tuple); by default its input text."""
        return self.view(example).input

    def traffic_text(self, logged_input: Any) -> str:
        """The text of a logged request's input that `monitor` compares with the data's inputs."""
        return str(logged_input)

    def record(self, example: Any) -> dict[str, Any]:
        """`example` as a JSONL record this task reads back (`retune` writes its data files with it)."""
        raise UserError(f"retune does not handle the {self.name} task yet (classification and chat do)")

    def serve_inputs(
        self, model: torch.nn.Module, inputs: list[Any], pad_id: int, batch_size: int
    ) -> list[Any]:
        """One batch of the server's inputs through the model: one answer each, which the task's route turns
        into its response (classification: ranked labels; regression: numbers; embedding: vectors; tokens:
        entities). Only tasks with an endpoint have it."""
        raise UserError(f"a {self.name} model is not served one input at a time")

    serves_from_export: ClassVar[bool] = False
    """Its server answers can come from its ONNX export (`serve --engine onnx`): see `serve_exported`."""

    def serve_exported(
        self,
        scores: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        inputs: list[Any],
        pad_id: int,
        batch_size: int,
    ) -> list[Any]:
        """`serve_inputs`' answers computed from an export's scores instead of the model: `scores` maps a padded
        batch (input_ids, attention_mask and, for pairs, token_type_ids) to what `export_scores` gives for it,
        as the ONNX file computes it. Only where `serves_from_export`."""
        raise UserError(f"a {self.name} model is not served from its export")

    def decode_batch(self, model: torch.nn.Module, cache_bytes: int, max_rows: int) -> Any:
        """A continuous batch (decoding.DecodeBatch) in which the server decodes several of this task's
        answers at once; None where the task writes no text or its answers decode one at a time."""
        return None

    def served_outputs(self, model: torch.nn.Module, texts: list[Any], pad_id: int) -> list[dict[str, Any]]:
        """What the server would answer for each input (a text or a pair), as it logs it (`monitor` computes the reference's
        outputs with it); empty where the task's answers have no shares to compare (text it writes)."""
        return []

    def output_categories(
        self, reference: list[dict[str, Any]], recent: list[dict[str, Any]]
    ) -> tuple[list[str], list[str], list[str]] | None:
        """The outputs of reference texts and of logged requests as categories whose shares `monitor`
        compares (PSI): (every category, the reference's, the recent ones'). None: nothing to compare."""
        return None

    def correction_refusal(self, correction: Correction, logged_input: Any) -> str | None:
        """Why /v1/feedback cannot take this correction of the model's answer to `logged_input` (None: it
        can). By default (text-writing tasks) a better answer or a rating, never a label or entities."""
        if correction.label is not None or correction.entities is not None:
            return "the model wrote an answer: send a better answer or a rating"
        return None

    def stored_answer(self, correction: Correction) -> str | None:
        """What the request log keeps as the correction's answer (`corrected_record` reads it back): the
        better answer; a task taking another kind of correction says how it is kept."""
        return correction.answer

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        """A training record from a logged request's input and its correction (a label or an answer), given
        what the model answered (`output`); None where the correction makes no record."""
        raise UserError(f"retune does not handle the {self.name} task yet (classification and chat do)")
