"""The sections of the run config (model, data, check, train, distributed, evaluation, search, monitor,
retune), each a typed pydantic model with its defaults documented where they are declared. They import
nothing of tunesmith's but the plugin base, so every layer can read its own section; config.py assembles
them, with the task's and the method's own sections, into the RunConfig.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tunesmith.plugin import Section
from tunesmith.units import parse_size


class ModelConfig(Section):
    name: str | None = None
    """A catalog name (`tunesmith models`), a local folder, or a Hugging Face hub id; empty takes the task's
    packaged default (minilm for classification and QA, smollm2-135m-instruct for chat and summarization)."""
    max_length: int | None = Field(None, gt=0)
    """Longest input in tokens; longer inputs are truncated (batches are padded only to their longest).
    Empty takes the task's default: for classification, chosen from the data (the length that keeps 99% of
    the training texts whole, at least 128, at most what the model takes) and, when that is past 128, the
    length from 128 doubling up to it at which the base model's probe scores best on the validation split
    (recipes/check.choose_max_length; on the quality panel's long chats the first 128 tokens scored 0.466
    macro-F1, all 512 0.282; bench/long_inputs.py); 512 for tasks that write text."""
    inference_batch_tokens: int | None = Field(4096, gt=0)
    """Most padded tokens in one inference batch (validation, test, the base model's embeddings, predict),
    on top of train.eval_batch_size examples: long inputs get smaller batches. Measured with MiniLM on 2 CPU
    cores, predicting the quality panel's Debian long texts (up to 362 tokens): 16.0 s and +600 MB in
    batches of 64, 8.3 s and +240 MB capped at 4096 (10.2 s at 8192, 7.4 s at 2048); on film reviews (short
    texts) every cap took the same time. A training run on the Debian set, where validation is a small
    share of the time, was no faster (13.7 against 14.2 samples/s). Empty: batches of train.eval_batch_size
    whatever their length."""
    attention_dropout: float | Literal["model"] | None = None
    """Dropout on the attention probabilities while training (BERT's attention_probs_dropout_prob, Llama's
    attention_dropout, GPT-2's attn_pdrop; whichever the model's config has). `model` keeps the model's own
    value (config.json); empty takes the task's default: 0 for classification (measured on the quality
    panel, tasks/classification.py), the model's own for the others. On CPU, PyTorch's fused attention runs
    only without dropout. The value trained with is written to the saved model's config.json; inference never
    drops anything."""
    trust_remote_code: bool = False
    """Run Python code shipped with a model folder. Off unless you trust its author."""
    allow_download: bool = False
    """Let a hub id download weights. Off: nothing downloads behind your back."""

    @field_validator("attention_dropout", mode="before")
    @classmethod
    def _rate_or_model(cls, value: Any) -> Any:
        if value is None or value == "model":
            return value
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = -1.0
        if not 0 <= rate < 1:
            raise ValueError("a rate from 0 up to (not including) 1, or `model` for the model's own")
        return rate


class DataConfig(Section):
    train: Path | None = None
    """Training file (CSV, JSONL or Parquet)."""
    validation: Path | None = None
    """Validation file; when absent, `validation_fraction` of train is split off (stratified)."""
    test: Path | None = None
    """Test file; when absent, `test_fraction` of train is split off (stratified)."""
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = "auto"
    """File format; `auto` goes by the file extension."""
    delimiter: Literal["auto", ",", ";", "\t", "|"] = "auto"
    """The field separator of CSV and TSV files; `auto` detects comma, semicolon, tab or pipe from the first
    lines (the data check says when it is not the extension's own: comma for .csv, tab for .tsv)."""
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_seed: int = 42
    """Seed of the stratified split, so the same files give the same splits."""


class CheckConfig(Section):
    """The data check that runs before training (and alone as `tunesmith check`). Errors always stop a run;
    these settings only tune the warnings."""

    strict: bool = False
    """Refuse to train when the check finds warnings too (errors always refuse)."""
    ignore: list[str] = Field(default_factory=list)
    """Warning kinds not to report: duplicates, leakage, conflicts, imbalance, truncation, short, personal_data,
    narrow, shortcut, length_shortcut, near_identical_pairs, rare_label, constant_label,
    inseparable_labels. Errors cannot be ignored."""
    min_class_examples: int = Field(10, ge=1)
    """A class with fewer training examples than this is flagged (imbalance)."""
    max_imbalance: float = Field(10.0, ge=1)
    """Largest class count over smallest above this is flagged (imbalance)."""
    min_words: int = Field(2, ge=1)
    """An input (or answer) with fewer words than this, or with no letter or digit, is flagged (short)."""
    prefix_words: int = Field(3, ge=1)
    """Words that make an input's (or answer's) opening, for the narrowness measures."""
    max_prefix_share: float = Field(0.3, gt=0, le=1)
    """One opening shared by more than this share of the examples is flagged (narrow)."""
    min_word_diversity: float = Field(0.25, ge=0, le=1)
    """Distinct words per word, averaged over windows of 1,000 words of the training inputs; below this the
    vocabulary is flagged as narrow (general English text scores about 0.4-0.5)."""
    examples_shown: int = Field(3, ge=1)
    """Lines quoted per finding (the JSON report keeps the same)."""


class TrainConfig(Section):
    epochs: int = Field(3, gt=0)
    """Passes over the training data. 3 was measured against "enough epochs for 300 optimizer steps" on the
    quality panel (README, "Quality"): more epochs helped the small sets a little and cost the film reviews
    0.044 macro-F1, so the fixed 3 stays."""
    batch_size: int = Field(16, gt=0)
    """Examples per optimizer micro-step; the effective batch is batch_size x gradient_accumulation."""
    gradient_accumulation: int = Field(1, gt=0)
    max_batch_tokens: int | None = Field(None, gt=0)
    """Most padded tokens in one forward and backward pass while training: a batch above it runs as several
    passes (longest examples first) whose gradients add up to the same optimizer step, so long texts take
    less memory without changing the batch. Empty: one pass per batch."""
    eval_batch_size: int = Field(64, gt=0)
    frozen_cache_mb: int = Field(2048, ge=0)
    """Memory for the outputs of an encoder's frozen bottom (training/frozen_prefix.py): when the method trains
    nothing in the embeddings and the lowest blocks (LoRA on the top layers, `freeze`), they run once per text
    and their outputs are kept, up to this many MiB (texts beyond it are computed each time). 0 turns it off.
    2048 holds 2,000 texts of 128 tokens at BERT-base's width (768) with room to spare."""
    learning_rate: float | None = Field(None, gt=0)
    """Peak learning rate; empty takes the method's recommended rate (written to the resolved config)."""
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    """Share of optimizer steps spent warming the learning rate up from 0."""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    group_by_length: bool | None = None
    """Batch examples of similar length together (less padding, same randomness across epochs). Empty takes
    the task's default: on for classification; off for the text-writing tasks, which pack instead (sorting
    chats by length put one-turn and two-turn chats in separate batches and cost eval loss, bench/chat.py)."""
    eval_every_steps: int | None = Field(None, gt=0)
    """Validate every N optimizer steps; empty validates at the end of each epoch."""
    log_every_steps: int = Field(10, gt=0)
    """Write the training loss to metrics.jsonl every N optimizer steps (and at step 1)."""
    report_to: list[str] = Field(default_factory=list)
    """Trackers that receive the run live (tracking/): `tensorboard` (event files in RUN/tensorboard/) and
    `mlflow` (train.mlflow_uri). Empty: none; metrics.jsonl and `tunesmith report` have everything either way.
    They start before the first step and then run off the training thread: with both, that thread used 0.6%
    of one core while the demo trained (bench/trackers.py)."""
    mlflow_uri: str | None = None
    """MLflow's tracking URI (a server such as http://mlflow.example:5000, sqlite:///path.db, a folder).
    Empty, with mlflow in report_to: $MLFLOW_TRACKING_URI when set (MLflow's own variable), else
    sqlite:///FOLDER/mlflow.db, FOLDER being the one that holds the run folder (runs/ for runs/demo), with
    the files in FOLDER/mlartifacts; the resolved config records which (so a retune's versions log beside)."""
    mlflow_experiment: str = "tunesmith"
    """The MLflow experiment the run is logged under."""
    checkpoint_every_minutes: float | None = Field(30.0, gt=0)
    """Also write a resumable checkpoint mid-epoch once this many minutes have passed since the last one,
    so a kill -9 or a lost machine costs at most that much training (a signal costs none: SIGTERM and a
    first Ctrl-C checkpoint the step they stop at). Empty: at validations only. A LoRA checkpoint of MiniLM
    takes well under a second; once in 30 minutes is noise next to the training."""
    metric: str | None = None
    """Validation metric that picks the best checkpoint and drives early stopping; empty takes the task's
    (macro_f1 for classification, rougeL for chat and summarization, f1 for QA)."""
    early_stopping_patience: int | None = Field(2, ge=1)
    """Stop after this many validations in which no fine-tuned checkpoint beat the earlier ones (the base
    model's step-0 score does not count: training goes on while it improves, even below the base); empty
    never stops early."""
    init_from: Path | None = None
    """A finished run folder (same model, task, labels and method) whose trained weights this run starts
    from, instead of the base model with a fresh method: `tunesmith retune` with retune.start=serving. That
    start model then competes with the checkpoints as the base does (train.keep)."""
    keep: Literal["better", "tuned"] = "better"
    """Which model the run holds when fine-tuning does not beat the base model on validation. `better`: the
    model training starts from is validated first, like a checkpoint, when it is the base model (methods
    that start as a no-op on it; for classification the head starts from the base-model probe), and it stays
    the run's model unless a checkpoint beats it. `tuned`: the best fine-tuned checkpoint, whatever it scores."""
    keep_confidence: float = Field(0.7, ge=0, lt=1)
    """With keep=better, a checkpoint replaces the base (start) model only if it beats it on the validation
    metric in at least this share of paired bootstrap resamples of the validation split (0: any gain on the
    split itself). A small validation split is noisy: chosen on the quality panel (README, "Which model the
    run keeps"), where every best checkpoint with a share of 0.70 to 0.79 was also above the base on test
    (ChatterBot topics 0.71 and 0.74: +0.001 and +0.022; long chats 0.74: +0.041) and both near 0.5 were
    below it (ChatterBot 0.48 and 0.50: -0.075 and -0.037); 0.8 kept the base on all three of the first.
    Metrics that cannot be resampled (loss, BLEU) or a validation that scores only part of the split
    (generation during training) compare the values alone."""
    memory_budget: str | None = None
    """Refuse to start when the estimated peak memory is over this (e.g. 8GB, 1.5GiB), naming a cheaper
    method that fits; empty: only print the estimate."""
    estimate: Literal["auto", "always", "never"] = "auto"
    """Measure the run's peak memory and epoch time before the first step (planning/estimate.py: two passes
    and 8 real training steps, then undone). `auto`: when the run has at least planning.estimate.WORTH_STEPS
    (40) optimizer steps; a shorter run is its own measurement, and its estimate would cost a quarter of it
    or more (on the test suite's small runs, more than the training). A memory_budget always measures."""
    gradient_checkpointing: bool = False
    """Recompute activations during the backward pass instead of storing them: much less memory for
    long sequences, about a third more time per step."""
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """`auto`: bf16 autocast on a CUDA GPU that supports it and on a CPU with native bf16 (AVX512-BF16, AMX-BF16,
    Arm BF16: tunesmith.hardware detects it), fp32 elsewhere (emulated bf16 is slower than fp32). Measured on
    the chat LoRA step (bench/profile_step.py, AVX512-BF16 CPU): 4.3 s fp32, 3.1 s bf16; eval loss within the
    seeds' spread (bench/chat.py). The final evaluation and the saved model run in fp32 either way."""
    threads: int | None = Field(None, gt=0)
    """CPU threads for torch; empty uses all cores."""

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)  # a ValueError that shows what it takes
        return value


class DistributedConfig(Section):
    """How several processes (`tunesmith train --nproc N`) share the work; one process ignores it."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    """`ddp`: every process holds the whole model and the gradients are summed. `fsdp`: each process holds 1/N
    of every parameter, gradient and optimizer state (torch's fully_shard), gathered layer by layer for each
    pass: the model's memory divided by N, for more communication."""


class EvaluationConfig(Section):
    """The final evaluation on the test split (evaluation/bootstrap.py, evaluation/forgetting.py)."""

    bootstrap_resamples: int = Field(1000, ge=0)
    """Resamples for the 95% interval of tuned - base; 0 turns the interval off."""
    forgetting: bool = True
    """Measure how much general ability tuning cost, on the reference text shipped with tunesmith."""
    perplexity_increase_warning: float = Field(0.2, ge=0)
    """Decoders: warn when perplexity on general English rises by more than this share (0.2 = 20%)."""
    embedding_similarity_warning: float = Field(0.8, ge=0, le=1)
    """Encoders: warn when general sentence embeddings' mean cosine similarity to the base falls below."""
    retrieval_drop_warning: float = Field(0.1, ge=0, le=1)
    """Encoders: warn when general retrieval accuracy@1 falls by more than this."""


class SearchRange(Section):
    """One searched key: `choices`, or `low`..`high` (integers if both are integers; `log` samples on a log
    scale, `step` quantizes)."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give either a non-empty `choices` list or `low` and `high`, not both")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError("give `choices`, or `low` and `high` with low <= high")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.low, bool)


class SearchConfig(Section):
    """`tunesmith tune`: Optuna's TPE sampler over `space`, the median pruner on each validation."""

    trials: int = Field(20, gt=0)
    """Finished trials (completed or pruned) to reach; a resumed search runs only the missing ones."""
    metric: str | None = None
    """The validation metric to optimise; empty: train.metric."""
    space: dict[str, SearchRange] = Field(default_factory=dict)
    """Dotted config keys and their ranges, e.g. {train.learning_rate: {low: 1e-5, high: 1e-3, log: true},
    method.rank: {choices: [4, 8, 16]}, train.epochs: {low: 1, high: 4}}."""
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    """Trials to run first with these exact values (e.g. your current settings), then the sampler's."""
    pruning: bool = True
    """Stop a trial early when its validation metric is worse than the median of earlier trials at the same
    epoch."""
    startup_trials: int = Field(2, ge=0)
    """Trials that always run to the end before pruning starts."""
    seed: int = 42


class MonitorConfig(Section):
    """`tunesmith monitor`: recent traffic against held-out data the model was not trained on
    (monitoring/drift.py). A detector alerts when its threshold is crossed; any alert is drift (exit 1)."""

    min_requests: int = Field(30, ge=2)
    """Fewer logged requests in the window: no verdict (exit 0, status insufficient_data)."""
    reference_examples: int = Field(500, ge=10)
    """Most reference texts (validation + test splits, topped up from training data when fewer than 100)."""
    recent_examples: int = Field(500, ge=10)
    """Most recent requests compared (the latest ones in the window)."""
    domain_auc: float = Field(0.75, gt=0.5, le=1)
    """Alert when a classifier tells recent from reference embeddings with this ROC-AUC (0.5 = cannot)."""
    mmd_p_value: float = Field(0.01, gt=0, lt=1)
    """Alert when the MMD permutation test's p-value is below this."""
    permutations: int = Field(200, ge=20)
    """Permutations for the MMD p-value."""
    length_p_value: float = Field(0.01, gt=0, lt=1)
    """Alert when the two-sample KS test on text length (tokens) gives a p-value below this."""
    oov_increase: float = Field(0.1, ge=0, le=1)
    """Alert when the share of words never seen in training rises by more than this."""
    psi: float = Field(0.2, ge=0)
    """Alert when the population stability index of predicted label shares exceeds this (0.1-0.2 moderate)."""
    confidence_drop: float = Field(0.1, ge=0, le=1)
    """Alert when mean top-label probability falls by more than this."""
    seed: int = 0


class RetuneConfig(Section):
    """`tunesmith retune`: a new version from the training data plus corrections, promoted if not worse."""

    promote: Literal["if_not_worse", "never", "always"] = "if_not_worse"
    """`if_not_worse`: serve the new version when its test metric (train.metric) is at least the serving
    version's minus `tolerance`, on the same test examples."""
    tolerance: float = Field(0.0, ge=0)
    """How much worse the new version may score and still be promoted."""
    correction_weight: int = Field(1, ge=1, le=20)
    """Each correction enters the training data this many times (corrections are few and precious)."""
    objective: Literal["sft", "dpo", "kto"] = "sft"
    """What the new version learns from the feedback. `sft`: corrections join the serving task's own training
    data (the right label, the better answer; for a preference run, the better answer preferred over the one
    the model gave). For a chat run, `dpo`: each better answer is a preference pair
    against the answer the model gave; `kto`: thumbs up and down (and corrections) label answers desirable or
    not. dpo and kto train the preference task from the serving version's weights (`start` does not apply:
    they refine what serves) on feedback alone, and judge on held-out feedback."""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """dpo/kto: the share of feedback (by request) held out to decide promotion on."""
    start: Literal["base", "serving"] = "base"
    """What the new version's training starts from: `base`, the base model with a fresh method, as the first
    run did; `serving`, the serving version's trained weights (train.init_from), which then competes with the
    new checkpoints on validation. A version whose labels differ from the serving one's starts from the base.
    bench/retune.py measures both."""


def default_mlflow_uri(output_dir: Path) -> str:
    """train.mlflow_uri when the config leaves it empty: $MLFLOW_TRACKING_URI, else a SQLite file in the
    folder that holds the run folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output_dir).resolve().parent}/mlflow.db"
