"""Embedding fine-tuning: an encoder learns to put a query near the texts that answer it (retrieval), or two
texts as near as their similarity score says.

Data: `anchor` and `positive` columns (a query and a text that answers it), optionally `negative` (a text
that looks relevant but is not: a hard negative, e.g. from `tunesmith mine`), or `score` (a similarity label
per pair, for the scored losses). The model is the pretrained encoder itself, pooled the way it was trained
(models/sentence_pooling.py); there is no head, so the untouched model is the base it is compared with,
and training's step 0 validates it (it is kept if no checkpoint beats it).

Validation and test are retrieval over the split: each example's anchor is a query, the split's positives
(and negatives) are the corpus, and its relevant documents are the positives of that anchor
(evaluation/retrieval.py: NDCG@10, MRR@10, MAP@100, Recall@1/10/100, a score per query for the paired
bootstrap). Scored data is judged as sentence-transformers judges it: the Spearman correlation of the
pairs' cosines with their scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.checkpoint import checkpoint

from tunesmith.data.batch_order import no_duplicate_batches
from tunesmith.data.checks.view import ExampleView, TokenCount
from tunesmith.data.corpus import Document, read_corpus
from tunesmith.data.padding import pad
from tunesmith.data.readers import (
    FileFormat,
    OnError,
    Record,
    parse_each,
    read_records,
    require_columns,
    require_field,
)
from tunesmith.data.token_batches import token_capped_batches
from tunesmith.errors import DataError
from tunesmith.evaluation.bootstrap import Resampler, mean_resampler
from tunesmith.evaluation.correlation import correlation_resampler, correlations
from tunesmith.evaluation.forgetting import GeneralAbility, encoder_ability
from tunesmith.evaluation.retrieval import METRICS, retrieval_scores
from tunesmith.evaluation.vector_search import CorpusIndex, build_index, search_kind, top_documents
from tunesmith.models.catalog import resolve_model
from tunesmith.models.loader import load_pretrained
from tunesmith.models.running import evaluating
from tunesmith.models.sentence_pooling import (
    POOLING_MODES,
    SentencePooling,
    pool,
    read_pooling,
    save_sentence_encoder,
    sentence_encoder_vectors,
)
from tunesmith.plugin import PluginParams
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import Evaluation, Task
from tunesmith.tasks.embedding.loss import LOSSES, Embedded, EmbeddingLoss, matryoshka

ROLES = ("anchor", "positive", "negative")
RELEVANT = "relevant"
"""The field of a retrieval query (for `eval --corpus`) that lists its relevant corpus ids."""
HITS = 10
"""Documents `predict --corpus` returns per text (`--top` shows fewer)."""
RANKED_SAMPLE = 2000
"""Training pairs at most that fit_baseline ranks with the base model (a sample past this: 2,000 pairs take
about 30 s to embed on 2 CPU cores)."""


class EmbeddingParams(PluginParams):
    name: Literal["embedding"] = "embedding"
    anchor_column: str = "anchor"
    """Column or field with the query (a question, a ticket, a title)."""
    positive_column: str = "positive"
    """Column or field with the text that answers the anchor (the FAQ entry, the precedent, the document)."""
    negative_column: str = "negative"
    """Optional column or field with a text that must rank below the positive (a hard negative)."""
    score_column: str = "score"
    """Column or field with the pair's similarity label (a number), read by the scored losses only."""
    loss: str = "mnrl"
    """The objective: `mnrl` (rank each anchor's positive first among the batch's positives and negatives),
    or for pairs with a score, `cosent` (order the cosines as the scores) or `cosine` (regress the cosine on
    the score)."""
    loss_params: dict[str, Any] = Field(default_factory=dict)
    """The objective's own keys (mnrl, cosent: scale), checked against it (tasks/embedding/)."""
    pooling: Literal["auto", "mean", "cls", "max", "lasttoken"] = "auto"
    """How token vectors become one vector: `auto` reads the model's sentence-transformers modules.json
    (all-MiniLM-L6-v2: mean) and takes the mean where there is none."""
    mini_batch_tokens: int = Field(512, ge=1)
    """Padded tokens per forward pass: a batch's anchors, positives and negatives together are sorted by
    length and cut into passes of at most this many tokens (a longer text gets a pass of its own), so each
    pass pads little; the loss still sees the whole batch at once. 512 measured fastest on a 2-core CPU
    (bench/embedding.py's pairs, LoRA: 384 to 512 tokens about 1.5x the speed of 32 texts a pass, 1,536
    tokens 1.2x); not yet measured on a GPU, where larger passes may pay."""
    cached: bool = False
    """Gradient caching (GradCache, Gao et al. 2021; sentence-transformers' Cached* losses): each forward pass
    keeps no activations and runs again during backward, one pass at a time, so memory holds one pass
    (mini_batch_tokens) however large the batch (more in-batch negatives), for about one forward pass more
    of time. The gradients are the same as without it (tests/unit/test_embedding_task.py)."""
    exact_search_max_documents: int | None = Field(4_000_000, ge=0)
    """`eval --corpus`, `predict --corpus` and `mine --corpus` search a corpus of up to this many documents
    exactly (its float vectors in memory: 4M x 384 dimensions is 6 GB), a larger one approximately with a
    faiss IVF-SQ8 index filled as the corpus is embedded (a quarter of the memory; needs the `index` extra);
    null: always exact. Exact search takes about 8 ms a query per million documents on 2 CPU cores, far
    less than embedding the corpus (bench/vector_search.py; evaluation/vector_search.py)."""
    matryoshka_dims: list[int] = Field(default_factory=list)
    """Also train each of these leading slices of the vector (e.g. [256, 128, 64]) to embed on its own, each
    weighted as the full vector (Matryoshka; /v1/embeddings' `dimensions` then cuts vectors to them)."""

    @model_validator(mode="after")
    def _known_loss(self) -> EmbeddingParams:
        LOSSES.get(self.loss).Params(**self.loss_params)  # an unknown loss or key is refused here
        if any(d < 1 for d in self.matryoshka_dims):
            raise ValueError("matryoshka_dims must be positive numbers of dimensions")
        return self


@dataclass(frozen=True)
class TextPair:
    """A training pair (anchor, positive, optional negative or score), or, for `eval --corpus`, a retrieval
    query: its text as `anchor`, no positive, and the ids of its relevant corpus documents."""

    anchor: str
    positive: str | None
    negative: str | None
    score: float | None
    path: Path
    line: int
    unit: str = "line"
    relevant: tuple[str, ...] | None = None


@TASKS.register("embedding")
class Embedding(Task):
    name = "embedding"
    Params = EmbeddingParams
    model_kinds = ("encoder",)
    default_metric = "ndcg@10"
    default_model = "minilm"
    default_max_length = None  # from the data (recipes/check.py)
    default_group_by_length = False
    """Batches of random texts: grouped by length, a batch's negatives would differ from its positives by
    length alone, and in-batch negatives need no padding savings (each mini-batch is length-sorted)."""
    default_attention_dropout = 0.0
    """As for classification on the same encoders (tasks/classification.py): PyTorch's fused attention runs
    on CPU only without dropout."""
    headline = ("ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10", "recall@100")
    peft_task_type = "FEATURE_EXTRACTION"
    couples_batch = True
    params: EmbeddingParams

    def __init__(self, params: PluginParams, model_cfg: Any):
        super().__init__(params, model_cfg)
        cls = LOSSES.get(self.params.loss)
        self.objective: EmbeddingLoss = cls(cls.Params(**self.params.loss_params))
        self._pooling: SentencePooling | None = None
        self.negatives = False
        """Whether the training data has a negative per pair (then every pair has one)."""
        self.corpus: list[Document] = []
        """Documents evaluation and prediction search (use_corpus); none: each split's own documents."""
        self._corpus_index: dict[str, int] = {}
        self._corpus_rows: list[list[int]] | None = None

    def use_corpus(self, path: Path, fmt: str | FileFormat = "auto") -> str | None:
        """Search this corpus (`id`, `text` records) from now on: `eval` ranks it for each query, `predict`
        returns its best documents. Returns a line for the user when the search will be approximate."""
        self.corpus = read_corpus(path, fmt)
        self._corpus_index = {doc.id: i for i, doc in enumerate(self.corpus)}
        self._corpus_rows = None
        kind = search_kind(len(self.corpus), self.params.exact_search_max_documents)
        if kind == "exact":
            return None
        return f"{len(self.corpus):,} documents searched {kind}: retrieval metrics are lower bounds"

    def corpus_index(
        self, model: torch.nn.Module, rows: Sequence[Sequence[int]], batch_size: int, pad_id: int
    ) -> CorpusIndex:
        """The documents (token-id rows) embedded and indexed: exact up to task.exact_search_max_documents."""
        embed = lambda picked: self.embed_rows(model, [rows[i] for i in picked], batch_size, pad_id)  # noqa: E731
        return build_index(len(rows), embed, self.params.exact_search_max_documents)

    def corpus_rows(self) -> list[list[int]]:
        """The corpus documents' token ids (tokenized once)."""
        if self._corpus_rows is None:
            texts = [doc.text for doc in self.corpus]
            self._corpus_rows = self.tokenizer(texts, truncation=True, max_length=self.model_cfg.max_length)[
                "input_ids"
            ]
        return self._corpus_rows

    @classmethod
    def metric_for(cls, params: PluginParams, metric: str | None) -> str:
        """Scored data is judged by the Spearman correlation of cosines and scores; pairs by retrieval."""
        if metric is None and LOSSES.get(params.loss).scored:  # type: ignore[attr-defined]
            return "spearman"
        return metric or cls.default_metric

    @property
    def scored(self) -> bool:
        return self.objective.scored

    # --- data ---
    def _columns(self) -> dict[str, str]:
        columns = {
            "task.anchor_column": self.params.anchor_column,
            "task.positive_column": self.params.positive_column,
        }
        if self.scored:
            columns["task.score_column"] = self.params.score_column
        return columns

    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[TextPair]:
        records = require_columns(read_records(path, fmt, on_error), self._columns())
        return parse_each(records, self._example, on_error)

    def _text(self, record: Record, column: str, required: bool = True) -> str | None:
        if not required and record.fields.get(column) in (None, ""):
            return None
        value = require_field(record, column)
        if not isinstance(value, str):
            raise record.error(f'"{column}" is not a string (got {type(value).__name__})', "empty")
        if not value.strip():
            raise record.error(f'empty text in "{column}"', "empty")
        return value

    def _example(self, record: Record) -> TextPair:
        p = self.params
        if RELEVANT in record.fields:
            return self._query(record)
        anchor, positive = self._text(record, p.anchor_column), self._text(record, p.positive_column)
        negative = self._text(record, p.negative_column, required=False)
        score = None
        if self.scored:
            value = require_field(record, p.score_column)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise record.error(f'score in "{p.score_column}" must be a number, got {value!r}')
            score = float(value)
        elif record.fields.get(p.score_column) not in (None, ""):
            raise record.error(
                f'this pair has a score ("{p.score_column}"), which task.loss={p.loss} does not read: '
                "set task.loss=cosent to learn from scores, or task.score_column to another name to ignore it",
                "column",
            )
        return TextPair(anchor, positive, negative, score, record.path, record.line, record.unit)  # type: ignore[arg-type]

    def _query(self, record: Record) -> TextPair:
        """A retrieval query: its text (the anchor column, or `query`) and `relevant`, corpus ids."""
        column = self.params.anchor_column if self.params.anchor_column in record.fields else "query"
        text = self._text(record, column)
        ids = record.fields[RELEVANT]
        ids = [ids] if isinstance(ids, str | int) and not isinstance(ids, bool) else ids
        if (
            not isinstance(ids, list)
            or not ids
            or any(isinstance(i, bool) or not isinstance(i, str | int) for i in ids)
        ):
            raise record.error(f'"{RELEVANT}" must be a corpus id or a non-empty list of them, got {ids!r}')
        return TextPair(
            text, None, None, None, record.path, record.line, record.unit, tuple(str(i) for i in ids)
        )  # type: ignore[arg-type]

    def view(self, example: TextPair) -> ExampleView:
        target = example.positive if example.relevant is None else " ".join(example.relevant)
        return ExampleView(
            example.path,
            example.line,
            example.unit,
            example.anchor,
            target,
            False,
            retrieval=example.relevant is None,
        )

    def measure(self, examples: Sequence[TextPair]) -> list[TokenCount]:
        limit = self.model_cfg.max_length
        texts = [t for ex in examples for t in self._texts(ex)]
        lengths = iter(len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"])
        counts = []
        for ex in examples:
            longest = max(next(lengths) for _ in self._texts(ex))
            counts.append(TokenCount(longest, longest > limit))
        return counts

    @staticmethod
    def _texts(example: TextPair) -> list[str]:
        return [t for t in (example.anchor, example.positive, example.negative) if t is not None]

    def fit(self, train: list[TextPair], others: dict[str, list[TextPair]]) -> None:
        """Every training pair has a negative, or none has (the loss takes one per anchor or none); the
        splits are pairs, not queries (those are for `eval --corpus`)."""
        self.negatives = train[0].negative is not None
        self.pooling = self.declared_pooling()
        for examples in [train, *others.values()]:
            for ex in examples:
                if ex.relevant is not None:
                    raise DataError(
                        ex.path,
                        ex.line,
                        f'a retrieval query ("{RELEVANT}": corpus ids): training and its splits need '
                        f"{self.params.anchor_column}/{self.params.positive_column} pairs; queries are for "
                        "`tunesmith eval RUN --data QUERIES --corpus CORPUS`",
                        ex.unit,
                        "column",
                    )
        for ex in train:
            if (ex.negative is not None) != self.negatives:
                has = "has no" if self.negatives else "has a"
                raise DataError(
                    ex.path,
                    ex.line,
                    f'this pair {has} "{self.params.negative_column}" where the training data\'s first pair '
                    f"{'has one' if self.negatives else 'has none'}: give every pair a negative, or none",
                    ex.unit,
                    "column",
                )

    def check(self, examples: Sequence[TextPair]) -> None:
        """With a corpus in use: every relevant id of a query names one of its documents."""
        for ex in examples:
            if ex.relevant is not None and not self.corpus:
                raise DataError(
                    ex.path,
                    ex.line,
                    f'a retrieval query ("{RELEVANT}": corpus ids) needs the corpus: give --corpus FILE',
                    ex.unit,
                    "column",
                )
            missing = [i for i in ex.relevant or () if i not in self._corpus_index]
            if missing:
                raise DataError(
                    ex.path, ex.line, f"relevant id {missing[0]!r} is not in the corpus", ex.unit, "labels"
                )

    @property
    def pooling(self) -> SentencePooling:
        """How this run pools: what fit() or restore() set, else the model's declared pooling."""
        if self._pooling is None:
            self._pooling = self.declared_pooling()
        return self._pooling

    @pooling.setter
    def pooling(self, pooling: SentencePooling) -> None:
        self._pooling = pooling

    def declared_pooling(self) -> SentencePooling:
        """The model folder's sentence-transformers pooling (mean where it declares none), or task.pooling."""
        declared = SentencePooling("mean", False, "default")
        resolved = resolve_model(str(self.model_cfg.name))
        if resolved.is_local:
            declared = read_pooling(Path(resolved.source))
        if self.params.pooling != "auto":
            return SentencePooling(self.params.pooling, declared.normalize, "task.pooling")  # type: ignore[arg-type]
        return declared

    def state(self) -> dict[str, Any]:
        pooling = self.pooling
        return {
            "pooling": pooling.mode,
            "normalize": pooling.normalize,
            "pooling_source": pooling.source,
            "negatives": self.negatives,
        }

    def restore(self, state: dict[str, Any]) -> None:
        mode = state["pooling"]
        if mode not in POOLING_MODES:
            raise DataError(Path("task.json"), None, f"unknown pooling {mode!r}")
        self.pooling = SentencePooling(mode, bool(state["normalize"]), state.get("pooling_source", ""))
        self.negatives = bool(state.get("negatives", False))

    # --- model ---
    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModel

        return load_pretrained(AutoModel, resolved, self.model_cfg, **load_kwargs)

    def base_model_key(self) -> tuple[Any, ...]:
        return (*super().base_model_key(), self.pooling.mode)

    merged_layout = "sentence-transformers"

    def save_sentence_transformer(self, model: torch.nn.Module, folder: Path) -> None:
        pooling = self.pooling
        save_sentence_encoder(model, self.tokenizer, folder, self.model_cfg.max_length, pooling)

    def sentence_transformer_scores(self, folder: Path, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"embeddings": sentence_encoder_vectors(folder, texts)}

    def export_scores(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The unit-length sentence vectors: what a search compares."""
        with torch.no_grad():
            vectors = self.vectors(model, batch["input_ids"], batch["attention_mask"])
        return {"embeddings": torch.nn.functional.normalize(vectors.float(), dim=-1)}

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        """No head: the model before training is the base model, which step 0 validates."""
        return True

    def vectors(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (not unit length) of a padded batch of token ids."""
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        if hidden.shape[1] > mask.shape[1]:  # prompt tuning's virtual tokens, put before the text: not pooled
            hidden = hidden[:, hidden.shape[1] - mask.shape[1] :]
        mode = self.pooling.mode
        return pool(hidden, mask, mode)

    def encode(self, examples: Sequence[TextPair], tokenizer: Any) -> list[dict[str, Any]]:
        """Each example's texts as token ids by role (anchor, positive, negative where it has them); a query
        keeps its relevant documents as corpus indices."""
        texts = [t for ex in examples for t in self._texts(ex)]
        ids = iter(tokenizer(texts, truncation=True, max_length=self.model_cfg.max_length)["input_ids"])
        features = []
        for ex in examples:
            roles = [r for r in ROLES if getattr(ex, r) is not None]
            feature: dict[str, Any] = {role: next(ids) for role in roles}
            feature["length"] = sum(len(feature[role]) for role in roles)
            if ex.score is not None:
                feature["score"] = ex.score
            if ex.relevant is not None:
                feature["relevant"] = [self._corpus_index[i] for i in ex.relevant]
            features.append(feature)
        return features

    def epoch_batches(
        self,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        seed: int,
        epoch: int,
        group_by_length: bool,
    ) -> list[list[int]]:
        """Scored pairs batch as any task's; ranked ones never hold a text twice in a batch (its copy would be
        one of its own negatives)."""
        if self.scored:
            return super().epoch_batches(features, batch_size, seed, epoch, group_by_length)
        roles = [r for r in ROLES if r in features[0]] if features else []
        keys = [[tuple(f[r]) for r in roles] for f in features]
        return no_duplicate_batches(keys, batch_size, seed, epoch)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """The batch's texts (every anchor, then every positive, then every negative) sorted by length and cut
        into passes of at most task.mini_batch_tokens padded tokens (`ids_k`, `mask_k`), and `order`: (roles x
        examples) the row of each text among the passes' vectors, concatenated."""
        roles = [r for r in ROLES if r in features[0]]
        texts = [f[r] for r in roles for f in features]
        batch: dict[str, torch.Tensor] = {}
        order = torch.empty(len(texts), dtype=torch.long)
        row = 0
        lengths = [len(t) for t in texts]
        for k, chunk in enumerate(token_capped_batches(lengths, len(texts), self.params.mini_batch_tokens)):
            batch[f"ids_{k}"], batch[f"mask_{k}"] = pad([texts[i] for i in chunk], pad_id)
            order[chunk] = torch.arange(row, row + len(chunk))
            row += len(chunk)
        batch["order"] = order.view(len(roles), len(features))
        if "score" in features[0]:
            batch["scores"] = torch.tensor([f["score"] for f in features], dtype=torch.float32)
        return batch

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return sum(int(v.numel()) for k, v in batch.items() if k.startswith("ids_"))

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        chunks = []
        for k in range(sum(1 for key in batch if key.startswith("ids_"))):
            ids, mask = batch[f"ids_{k}"], batch[f"mask_{k}"]
            if self.params.cached and torch.is_grad_enabled():
                chunks.append(checkpoint(self.vectors, model, ids, mask, use_reentrant=False))
            else:
                chunks.append(self.vectors(model, ids, mask))
        rows = torch.cat(chunks)[batch["order"]]  # roles x examples x width
        embedded = Embedded(rows[0], rows[1], rows[2] if rows.shape[0] > 2 else None, batch.get("scores"))
        count = rows.shape[1]
        return matryoshka(self.objective, embedded, self.params.matryoshka_dims) * count, count

    # --- evaluation ---
    def embed_rows(
        self, model: torch.nn.Module, rows: Sequence[Sequence[int]], batch_size: int, pad_id: int
    ) -> torch.Tensor:
        """Unit-length vectors of token-id rows, in length-sorted batches of at most `batch_size` rows and
        model.inference_batch_tokens padded tokens."""
        with evaluating(model) as device:

            def vectors(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return self.vectors(model, ids.to(device), mask.to(device)).float().cpu()

            return self._batched_vectors(vectors, rows, batch_size, pad_id)

    def _batched_vectors(
        self,
        vectors: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        rows: Sequence[Sequence[int]],
        batch_size: int,
        pad_id: int,
    ) -> torch.Tensor:
        """`vectors` (padded ids, mask -> pooled vectors) over length-sorted batches, at unit length."""
        out = torch.empty((len(rows), 0))
        lengths = [len(r) for r in rows]
        for idx in token_capped_batches(lengths, batch_size, self.model_cfg.inference_batch_tokens):
            ids, mask = pad([rows[i] for i in idx], pad_id)
            found = vectors(ids, mask)
            if out.shape[1] == 0:
                out = torch.empty((len(rows), found.shape[1]))
            out[idx] = torch.nn.functional.normalize(found, dim=-1)
        return out

    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        if self.scored:
            return self._evaluate_scored(model, features, batch_size, pad_id)
        anchors, anchor_of = _unique([f["anchor"] for f in features])
        corpus = self.corpus_rows() if self.corpus else []
        documents, document_of = _unique(
            [*corpus, *(f[r] for f in features for r in ("positive", "negative") if r in f)]
        )
        relevant_by_anchor: dict[int, set[int]] = {}
        for f in features:
            found = relevant_by_anchor.setdefault(anchor_of[tuple(f["anchor"])], set())
            found.update(document_of[tuple(corpus[i])] for i in f.get("relevant", []))
            if "positive" in f:
                found.add(document_of[tuple(f["positive"])])
        queries = self.embed_rows(model, anchors, batch_size, pad_id)
        corpus = self.corpus_index(model, documents, batch_size, pad_id)
        index = [anchor_of[tuple(f["anchor"])] for f in features]
        scores = retrieval_scores(queries[index], corpus, [relevant_by_anchor[i] for i in index])
        metrics: dict[str, Any] = {name: float(np.mean(values)) for name, values in scores.items()}
        metrics["examples"], metrics["corpus_size"] = len(features), len(documents)
        per_query = [dict(zip(scores, values, strict=True)) for values in zip(*scores.values(), strict=True)]
        return Evaluation(metrics, per_query, example_scores=scores)

    def _evaluate_scored(
        self, model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
    ) -> Evaluation:
        first = self.embed_rows(model, [f["anchor"] for f in features], batch_size, pad_id)
        second = self.embed_rows(model, [f["positive"] for f in features], batch_size, pad_id)
        cosines = (first * second).sum(-1).tolist()
        metrics: dict[str, Any] = correlations(cosines, [f["score"] for f in features])
        metrics["examples"] = len(features)
        return Evaluation(metrics, cosines)

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        if len(evaluation.predictions) != len(features):
            return None
        if self.scored:
            return correlation_resampler(evaluation.predictions, [f["score"] for f in features])
        return mean_resampler({k: [query[k] for query in evaluation.predictions] for k in METRICS})

    def fit_baseline(self, resolved: Any, train: Sequence[TextPair], path: Path, seed: int) -> str | None:
        """How many training pairs the base model already gets right: their positive ranked first among all
        the training positives for their anchor (on a sample of RANKED_SAMPLE pairs when there are more).
        Such pairs add little to the loss (their positive already wins), so a high share means the data
        teaches little that the base does not know; hard negatives (`tunesmith mine`) make them count."""
        pairs = [ex for ex in train if ex.positive is not None]
        if len(pairs) < 2:
            return None
        if len(pairs) > RANKED_SAMPLE:
            picked = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:RANKED_SAMPLE]
            pairs = [pairs[i] for i in sorted(picked.tolist())]
        model = self.load_model(resolved)
        pad_id = self.tokenizer.pad_token_id or 0
        positives = list(dict.fromkeys(ex.positive for ex in pairs))
        own = torch.tensor([positives.index(ex.positive) for ex in pairs])
        queries = self.embed_texts(model, [ex.anchor for ex in pairs], pad_id)
        documents = self.embed_texts(model, positives, pad_id)
        first = int((top_documents(queries, documents, 1)[1][:, 0] == own).sum())
        of = f"{len(pairs):,} training pairs" + (" (a sample)" if len(train) > RANKED_SAMPLE else "")
        return (
            f"the base model already ranks the positive first among {len(positives):,} training positives for "
            f"{first:,} of {of} ({100 * first / len(pairs):.1f}%): those teach little; hard negatives "
            "(tunesmith mine) make them count"
        )

    def evaluate_baseline(self, resolved: Any, examples: Sequence[TextPair], path: Path) -> Evaluation | None:
        """The untouched encoder, pooled as it was trained, on the same queries and corpus."""
        model = self.load_model(resolved)
        return self.evaluate(
            model, self.encode(examples, self.tokenizer), 64, self.tokenizer.pad_token_id or 0
        )

    baseline_description = "base = the pretrained encoder as it ships, pooled the way it was trained"

    def general_ability(self, model: torch.nn.Module) -> GeneralAbility | None:
        return encoder_ability(model, self.tokenizer, self.model_cfg.max_length)

    # --- predict ---
    endpoint = "embeddings"

    def serve_inputs(
        self, model: torch.nn.Module, inputs: list[Any], pad_id: int, batch_size: int
    ) -> list[Any]:
        return list(self.embed_texts(model, inputs, pad_id, batch_size))

    def embed_texts(
        self, model: torch.nn.Module, texts: Sequence[str], pad_id: int, batch_size: int = 64
    ) -> torch.Tensor:
        """Unit-length vectors of `texts` (each cut at model.max_length tokens), texts x dimensions."""
        return self.embed_rows(model, self._text_ids(texts), batch_size, pad_id)

    def _text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.model_cfg.max_length)["input_ids"]

    serves_from_export = True

    def serve_exported(
        self,
        scores: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        inputs: list[Any],
        pad_id: int,
        batch_size: int,
    ) -> list[Any]:
        """The vectors of the export (unit length already; normalised again, as the model's are)."""

        def vectors(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return scores({"input_ids": ids, "attention_mask": mask})["embeddings"].float()

        return list(self._batched_vectors(vectors, self._text_ids(inputs), batch_size, pad_id))

    def dimensions(self, model: torch.nn.Module) -> int:
        """The width of the model's vectors."""
        return int(model.config.hidden_size)

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        """Each text's vector; with a corpus in use, its HITS most similar documents instead (id, cosine,
        text)."""
        vectors = self.embed_texts(model, inputs, pad_id)
        if not self.corpus:
            return [{"text": t, "embedding": v.tolist()} for t, v in zip(inputs, vectors, strict=True)]
        found, ranked = self.corpus_index(model, self.corpus_rows(), 64, pad_id).search(vectors, HITS)
        rows = []
        for text, scores, order in zip(inputs, found.tolist(), ranked.tolist(), strict=True):
            hits = [
                {"id": self.corpus[i].id, "score": score, "text": self.corpus[i].text}
                for i, score in zip(order, scores, strict=True)
                if i >= 0  # faiss pads a short list of results with -1
            ]
            rows.append({"text": text, "hits": hits})
        return rows

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        if "hits" in row:
            shown = [f"  {h['score']:.3f}  {h['id']}  {h['text'][:90]}" for h in row["hits"][:top]]
            return "\n".join([row["text"], *shown])
        shown = " ".join(f"{x:+.4f}" for x in row["embedding"][:4])
        return f"[{shown} ... ({len(row['embedding'])} dims)]\t{row['text']}"


def _unique(rows: Sequence[Sequence[int]]) -> tuple[list[list[int]], dict[tuple[int, ...], int]]:
    """The distinct token-id rows in first-seen order, and each one's index."""
    index: dict[tuple[int, ...], int] = {}
    for row in rows:
        index.setdefault(tuple(row), len(index))
    return [list(k) for k in index], index
