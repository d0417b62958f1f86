"""Token classification: the entities in a text (names, places, languages, file formats, drugs and doses).

Input, either of:
- pre-split words with a tag each (`task.words_column`, `task.tags_column`: JSON lists, or a CoNLL file, one
  word and its tag a line), tags in `task.scheme` (IOB2 or BIOES);
- a text with its entities as character spans (`task.text_column`, `task.entities_column`: a list of
  {"start", "end", "label"}); the text is split into words (runs of letters and digits, and each other
  non-space character alone) and each entity must cover whole words.
Either way an example is its text, its words' character offsets and its entities over words; a sequence that
breaks the scheme, tags that do not match the words one for one, or a span that cuts a word is an error of its
line.

The model is the encoder with a linear layer over each token (transformers' AutoModelForTokenClassification),
trained on IOB2 tags. A word's tag sits on its first sub-token (`task.label_subtokens: first`; `all` trains
every sub-token, a B- continued by I-), and is read from there. A text longer than model.max_length is read in
overlapping windows (`task.stride` tokens shared); each word is read from the window where it has the most
context on both sides. The base model is the frozen encoder with a logistic regression over the first
sub-token's hidden state of each word (a per-token linear probe), which is also the head step 0 validates.
Metrics: evaluation/entities.py (seqeval's). `predict` prints each entity with its character offsets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from tunesmith.data.checks.view import ExampleView, TokenCount
from tunesmith.data.conll import TAGS, WORDS
from tunesmith.data.padding import pad
from tunesmith.data.readers import FileFormat, OnError, Record, parse_each, read_records, require_field
from tunesmith.errors import DataError
from tunesmith.evaluation import baseline
from tunesmith.evaluation.bootstrap import Resampler
from tunesmith.evaluation.entities import (
    ENTITY_HEADLINE,
    OUTSIDE,
    Entity,
    entities_of,
    entity_metrics,
    entity_resampler,
    iob2_tags,
    scheme_problem,
)
from tunesmith.evaluation.forgetting import GeneralAbility, encoder_ability
from tunesmith.models.loader import load_pretrained, load_tokenizer
from tunesmith.models.running import evaluating, move
from tunesmith.plugin import PluginParams
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import Correction, Evaluation, Task
from tunesmith.tasks.linear_cross_entropy import summed_token_cross_entropy

WORD = re.compile(r"\w+|[^\w\s]")
"""A word of a text given with character spans: letters and digits together, any other non-space character
alone (so "Paris," is "Paris" and ",")."""
NO_ENTITY = "(no entity)"
"""The drift report's category of a text in which no entity was found."""
IGNORED = -100
"""The label of a token the loss skips (special tokens, a word's later sub-tokens, padding)."""
EXAMPLES_SHOWN = 5
"""Texts the report shows with their true, base and tuned entities."""


class TokensParams(PluginParams):
    name: Literal["tokens"] = "tokens"
    words_column: str = WORDS
    """Field holding the pre-split words (a JSON list); a CoNLL file's sentences have it."""
    tags_column: str = TAGS
    """Field holding one tag per word (a JSON list)."""
    text_column: str = "text"
    """Instead of words: field holding the text, its entities in `entities_column`."""
    entities_column: str = "entities"
    """Field holding the text's entities: a list of {"start", "end", "label"} character offsets (end
    exclusive), each covering whole words."""
    scheme: Literal["IOB2", "BIOES"] = "IOB2"
    """The tags' scheme: IOB2 (B- begins an entity, I- continues it) or BIOES (also E- ends one, S- is a
    one-word entity)."""
    label_subtokens: Literal["first", "all"] = "first"
    """Which sub-tokens of a word carry its tag in training: the `first` (what Hugging Face's run_ner does by
    default; the others are skipped) or `all` (a B- word's later sub-tokens as I-)."""
    stride: int = Field(32, ge=0)
    """Tokens two windows of a long text share (each word is read where it has the most context)."""


@dataclass(frozen=True)
class TaggedText:
    text: str
    words: tuple[tuple[int, int], ...]
    """Each word's (start, end) character offsets in `text`."""
    entities: tuple[Entity, ...] | None
    """(type, first word, last word + 1); None for a text to predict."""
    path: Path
    line: int
    unit: str = "line"

    def word_texts(self) -> list[str]:
        return [self.text[a:b] for a, b in self.words]


def split_words(text: str) -> tuple[tuple[int, int], ...]:
    return tuple((m.start(), m.end()) for m in WORD.finditer(text))


@TASKS.register("tokens")
class Tokens(Task):
    name = "tokens"
    Params = TokensParams
    model_kinds = ("encoder",)
    default_metric = "f1"
    default_model = "minilm"
    default_max_length = None  # from the data (recipes/check.py)
    default_attention_dropout = 0.0
    """As for classification (its measurement: fused attention on CPU runs only without dropout)."""
    headline = ENTITY_HEADLINE
    peft_task_type = "TOKEN_CLS"
    endpoint = "entities"
    params: TokensParams

    def __init__(self, params: PluginParams, model_cfg: Any):
        super().__init__(params, model_cfg)
        self.labels: list[str] = []
        """The IOB2 tags, O first, then B- and I- of each entity type in sorted order."""

    # --- data ---
    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[TaggedText]:
        return parse_each(read_records(path, fmt, on_error), self._example, on_error)

    def _example(self, record: Record) -> TaggedText:
        p = self.params
        if p.words_column in record.fields or p.text_column not in record.fields:
            return self._from_words(record)
        return self._from_spans(record)

    def _from_words(self, record: Record) -> TaggedText:
        p = self.params
        words, tags = require_field(record, p.words_column), require_field(record, p.tags_column)
        if (
            not isinstance(words, list)
            or not all(isinstance(w, str) and w.strip() for w in words)
            or not words
        ):
            raise record.error(f'"{p.words_column}" must be a non-empty list of words (non-empty strings)')
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise record.error(f'"{p.tags_column}" must be a list of tags (strings)')
        if len(tags) != len(words):
            raise record.error(f"{len(words)} words but {len(tags)} tags: one tag a word", "labels")
        tags = [t.strip() for t in tags]
        problem = scheme_problem(tags, p.scheme)
        if problem:
            raise record.error(f"{problem} (task.scheme={p.scheme})", "labels")
        offsets, start = [], 0
        for word in words:
            offsets.append((start, start + len(word)))
            start += len(word) + 1
        return TaggedText(
            " ".join(words), tuple(offsets), tuple(entities_of(tags)), record.path, record.line, record.unit
        )

    def _from_spans(self, record: Record) -> TaggedText:
        p = self.params
        text = require_field(record, p.text_column)
        if not isinstance(text, str) or not text.strip():
            raise record.error(f'empty or non-text value in "{p.text_column}"', "empty")
        spans = require_field(record, p.entities_column)
        if not isinstance(spans, list):
            raise record.error(f'"{p.entities_column}" must be a list of {{"start", "end", "label"}}')
        words = split_words(text)
        starts = {a: i for i, (a, _) in enumerate(words)}
        ends = {b: i for i, (_, b) in enumerate(words)}
        entities: list[Entity] = []
        for span in sorted(spans, key=lambda s: s.get("start", 0) if isinstance(s, dict) else 0):
            if not isinstance(span, dict) or not {"start", "end", "label"} <= span.keys():
                raise record.error(f'each entity needs "start", "end" and "label", got {span!r}')
            a, b, label = span["start"], span["end"], span["label"]
            if not (isinstance(a, int) and isinstance(b, int) and 0 <= a < b <= len(text)):
                raise record.error(f"entity {span!r}: start and end must be offsets in the text, start < end")
            if not isinstance(label, str) or not label.strip() or "-" in label[:2]:
                raise record.error(
                    f"entity {span!r}: label must be a type name such as PER (no B-/I- prefix)"
                )
            if a not in starts or b not in ends:
                raise record.error(
                    f"entity {text[a:b]!r} at {a}-{b} cuts a word ({_word_at(text, words, a, b)!r}): an entity "
                    "covers whole words (runs of letters and digits; other characters are words alone)",
                    "labels",
                )
            first, last = starts[a], ends[b] + 1
            if entities and first < entities[-1][2]:
                raise record.error(f"entity {text[a:b]!r} at {a}-{b} overlaps the one before it", "labels")
            entities.append((label.strip(), first, last))
        return TaggedText(text, words, tuple(entities), record.path, record.line, record.unit)

    def tags_of(self, example: TaggedText) -> list[str]:
        return iob2_tags(example.entities or (), len(example.words))

    def view(self, example: TaggedText) -> ExampleView:
        return ExampleView(example.path, example.line, example.unit, example.text, None, True)

    def measure(self, examples: Sequence[TaggedText]) -> list[TokenCount]:
        """Tokens of the words; never cut: a long text is read in overlapping windows."""
        ids = self.tokenizer([ex.word_texts() for ex in examples], is_split_into_words=True)["input_ids"]
        return [TokenCount(len(i), False) for i in ids]

    def fit(self, train: list[TaggedText], others: dict[str, list[TaggedText]]) -> None:
        kinds = sorted({kind for ex in train for kind, _, _ in ex.entities or ()})
        if not kinds:
            raise DataError(train[0].path, None, "no training example has an entity", kind="labels")
        self.labels = [OUTSIDE, *(f"{p}-{k}" for k in kinds for p in ("B", "I"))]
        for examples in others.values():
            self.check(examples)

    def check(self, examples: Sequence[TaggedText]) -> None:
        known = {label.partition("-")[2] for label in self.labels[1:]}
        for ex in examples:
            for kind, _, _ in ex.entities or ():
                if kind not in known:
                    raise DataError(
                        ex.path,
                        ex.line,
                        f'entity type "{kind}" never occurs in the training data (types: {", ".join(sorted(known))})',
                        ex.unit,
                        "labels",
                    )

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def restore(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])

    # --- model ---
    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForTokenClassification

        return load_pretrained(
            AutoModelForTokenClassification,
            resolved,
            self.model_cfg,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={name: i for i, name in enumerate(self.labels)},
            **load_kwargs,
        )

    def base_model_key(self) -> tuple[Any, ...]:
        return (*super().base_model_key(), len(self.labels))

    def encode(self, examples: Sequence[TaggedText], tokenizer: Any) -> list[dict[str, Any]]:
        """One feature a window: token ids, each token's label (IGNORED where the loss skips it) and which word
        it begins (-1: none), and the window's example."""
        max_length = self.model_cfg.max_length
        enc = tokenizer(
            [ex.word_texts() for ex in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            stride=min(self.params.stride, max_length // 2),
            return_overflowing_tokens=True,
        )
        index = {name: i for i, name in enumerate(self.labels)}
        features = []
        for w, ids in enumerate(enc["input_ids"]):
            example = enc["overflow_to_sample_mapping"][w]
            ex = examples[example]
            tags = self.tags_of(ex) if ex.entities is not None else None
            labels, starts, previous = [], [], None
            for word in enc.word_ids(w):
                first = word is not None and word != previous
                starts.append(word if first else -1)
                if tags is None or word is None or (not first and self.params.label_subtokens == "first"):
                    labels.append(IGNORED)
                elif first:
                    labels.append(index[tags[word]])
                else:  # a later sub-token of the word: B- continues as I-
                    labels.append(index[tags[word].replace("B-", "I-", 1)])
                previous = word
            features.append(
                {
                    "input_ids": ids,
                    "length": len(ids),
                    "labels": labels,
                    "starts": starts,
                    "example": example,
                    "shown": (ex.text, ex.word_texts())  # for the report, on an example's first window
                    if not features or features[-1]["example"] != example
                    else None,
                }
            )
        return features

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        ids, mask = pad([f["input_ids"] for f in features], pad_id)
        labels, _ = pad([f["labels"] for f in features], IGNORED)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return summed_token_cross_entropy(logits, batch["labels"], IGNORED)

    def export_scores(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Each token's tag logits, 0 at padding: what padding positions get is never read, and a merged
        export moves it by more than the real tokens' (1.4e-4 against 1.7e-5 measured on a LoRA run)."""
        with torch.no_grad():
            logits = model(**batch).logits.float()
        return {"logits": logits * batch["attention_mask"].unsqueeze(-1).to(logits.dtype)}

    # --- reading the words back ---
    def word_scores(
        self, model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
    ) -> dict[int, np.ndarray]:
        """Each example's words x labels log-probabilities, each word read from the window where its first
        sub-token has the most tokens on its narrower side."""
        best: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
        with evaluating(model) as device:
            for _, chunk in self.length_sorted_batches(features, batch_size):
                batch = move(self.collate(chunk, pad_id), device)
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                keep_best(best, chunk, logits.float().log_softmax(-1).cpu().numpy())
        out: dict[int, dict[int, np.ndarray]] = {}
        for (example, word), (_, values) in best.items():
            out.setdefault(example, {})[word] = values
        return {e: np.stack([words[w] for w in sorted(words)]) for e, words in out.items()}

    def predicted_tags(self, scores: np.ndarray) -> list[str]:
        return [self.labels[i] for i in scores.argmax(-1)]

    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        scores = self.word_scores(model, features, batch_size, pad_id)
        truth, nll = self._truth(features), []
        predicted = []
        for example in range(len(truth)):
            words = scores.get(example, np.zeros((0, len(self.labels))))
            predicted.append(self.predicted_tags(words))
            ids = [self.labels.index(t) for t in truth[example]]
            nll.extend(-words[np.arange(len(ids)), ids])
        metrics = {"loss": float(np.mean(nll)) if nll else 0.0, **entity_metrics(truth, predicted)}
        return Evaluation(metrics, predicted)

    def _truth(self, features: Sequence[dict[str, Any]]) -> list[list[str]]:
        """Each example's true word tags, from its windows' labels at word starts."""
        out: dict[int, dict[int, str]] = {}
        for f in features:
            for word, label in zip(f["starts"], f["labels"], strict=True):
                if word >= 0 and label != IGNORED:
                    out.setdefault(f["example"], {})[word] = self.labels[label]
        return [[tags[w] for w in sorted(tags)] for _, tags in sorted(out.items())]

    def shown_examples(
        self, features: Sequence[dict[str, Any]], tuned: Evaluation, base: Evaluation | None
    ) -> list[dict[str, Any]]:
        """The first EXAMPLES_SHOWN texts where the base and the tuned model find different entities (the
        first texts when they agree on all), each with its true entities and both models' as "TYPE words"."""
        texts = [f["shown"] for f in features if f["shown"] is not None]
        truth = self._truth(features)

        def said(words: list[str], tags: Sequence[str]) -> str:
            return "; ".join(f"{kind} {' '.join(words[a:b])}" for kind, a, b in entities_of(tags)) or "-"

        order = list(range(len(texts)))
        if base is not None:
            order.sort(key=lambda i: tuned.predictions[i] == base.predictions[i])
        shown = []
        for i in order[:EXAMPLES_SHOWN]:
            row = {
                "prompt": texts[i][0],
                "reference": said(texts[i][1], truth[i]),
                "tuned": said(texts[i][1], tuned.predictions[i]),
            }
            if base is not None:
                row["base"] = said(texts[i][1], base.predictions[i])
            shown.append(row)
        return shown

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        return entity_resampler(self._truth(features), evaluation.predictions)

    def general_ability(self, model: torch.nn.Module) -> GeneralAbility | None:
        return encoder_ability(model, self.tokenizer, self.model_cfg.max_length)

    # --- predict ---
    def unlabelled(self, text: str, line: int) -> TaggedText:
        return TaggedText(text, split_words(text), None, Path("<input>"), line)

    def entities_in(self, example: TaggedText, tags: Sequence[str]) -> list[dict[str, Any]]:
        """The entities `tags` mark in the example's text, with character offsets (end exclusive)."""
        out = []
        for kind, first, last in entities_of(tags):
            start, end = example.words[first][0], example.words[last - 1][1]
            out.append({"type": kind, "start": start, "end": end, "text": example.text[start:end]})
        return out

    def find_entities(
        self, model: torch.nn.Module, texts: Sequence[str], pad_id: int, batch_size: int = 32
    ) -> list[list[dict[str, Any]]]:
        """Each text's entities (what `predict` prints)."""
        examples = [self.unlabelled(text, i + 1) for i, text in enumerate(texts)]
        usable = [i for i, ex in enumerate(examples) if ex.words]
        features = self.encode([examples[i] for i in usable], self.tokenizer)
        scores = self.word_scores(model, features, batch_size, pad_id)
        out: list[list[dict[str, Any]]] = [[] for _ in texts]
        for position, i in enumerate(usable):
            out[i] = self.entities_in(examples[i], self.predicted_tags(scores[position]))
        return out

    def serve_inputs(
        self, model: torch.nn.Module, inputs: list[Any], pad_id: int, batch_size: int
    ) -> list[Any]:
        return self.find_entities(model, inputs, pad_id, batch_size)

    def served_outputs(self, model: torch.nn.Module, texts: list[Any], pad_id: int) -> list[dict[str, Any]]:
        return [{"entities": found} for found in self.find_entities(model, texts, pad_id)]

    def output_categories(
        self, reference: list[dict[str, Any]], recent: list[dict[str, Any]]
    ) -> tuple[list[str], list[str], list[str]] | None:
        """The type of each entity found, and NO_ENTITY for a text where none was."""
        kinds = sorted({label.partition("-")[2] for label in self.labels[1:]})

        def found(outputs: list[dict[str, Any]]) -> list[str]:
            return [e["type"] for o in outputs for e in (o.get("entities") or [{"type": NO_ENTITY}])]

        return [*kinds, NO_ENTITY], found(reference), found(recent)

    def correction_refusal(self, correction: Correction, logged_input: Any) -> str | None:
        """The text's right entities (all of them: the ones the model got right too), each of the run's types
        and covering whole words of the logged text."""
        if correction.entities is None:
            return (
                'the model found entities: send the text\'s right ones as "entities", a list of {"start", "end", '
                '"label"} (all of them; [] for none)'
            )
        try:
            self.check([self._corrected(str(logged_input), correction.entities)])
        except DataError as exc:
            return exc.detail
        return None

    def stored_answer(self, correction: Correction) -> str | None:
        """Entities are kept as their JSON list."""
        return json.dumps(correction.entities, ensure_ascii=False)

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        """The logged text with its right entities (kept as JSON, `stored_answer`)."""
        if answer is None:
            return None
        return self.record(self._corrected(str(logged_input), json.loads(answer)))

    def _corrected(self, text: str, entities: list[dict[str, Any]]) -> TaggedText:
        record = Record(
            Path("<correction>"),
            1,
            {self.params.text_column: text, self.params.entities_column: entities},
            "request",
        )
        return self._from_spans(record)

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        return [
            {"text": text, "entities": found}
            for text, found in zip(inputs, self.find_entities(model, inputs, pad_id), strict=True)
        ]

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        shown = (
            "  ".join(f"{e['type']} {e['text']!r} {e['start']}-{e['end']}" for e in row["entities"]) or "-"
        )
        return f"{shown}\t{row['text']}"

    def record(self, example: TaggedText) -> dict[str, Any]:
        spans = [
            {"start": example.words[a][0], "end": example.words[b - 1][1], "label": kind}
            for kind, a, b in example.entities or ()
        ]
        return {self.params.text_column: example.text, self.params.entities_column: spans}

    # --- base model: frozen encoder + a linear layer per token ---
    baseline_description = (
        "base = the frozen pretrained encoder with a logistic regression over each word's first sub-token "
        "(its hidden state; fitted on the same training split)"
    )

    def _word_states(
        self, resolved: Any, examples: Sequence[TaggedText]
    ) -> tuple[np.ndarray, list[list[str]]]:
        """The frozen encoder's hidden state at each word's first sub-token (read as `word_scores` reads the
        model: from the window where it has the most context), and each example's tags."""
        from transformers import AutoModel

        encoder = load_pretrained(AutoModel, resolved, self.model_cfg)
        tokenizer = load_tokenizer(resolved, self.model_cfg)
        features = self.encode(examples, tokenizer)
        pad_id = tokenizer.pad_token_id or 0
        best: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
        with evaluating(encoder) as device:
            for _, chunk in self.length_sorted_batches(features, 64):
                ids, mask = pad([f["input_ids"] for f in chunk], pad_id)
                hidden = encoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
                keep_best(best, chunk, hidden.float().cpu().numpy())
        rows = [best[key][1] for key in sorted(best)]
        return np.stack(rows), [self.tags_of(ex) for ex in examples]

    def fit_baseline(self, resolved: Any, train: Sequence[TaggedText], path: Path, seed: int) -> str | None:
        states, tags = self._word_states(resolved, train)
        labels = [self.labels.index(t) for sentence in tags for t in sentence]
        baseline.LinearProbe.fit(states, labels, seed).save(path)
        return None

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        if baseline_path is None:
            return False
        weight, bias = baseline.LinearProbe.load(baseline_path).as_head(len(self.labels))
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(weight))
            model.classifier.bias.copy_(torch.from_numpy(bias))
        return True

    def evaluate_baseline(
        self, resolved: Any, examples: Sequence[TaggedText], path: Path
    ) -> Evaluation | None:
        if not path.is_file():
            return None
        states, truth = self._word_states(resolved, examples)
        predicted_ids = baseline.LinearProbe.load(path).predict(states)
        predicted, start = [], 0
        for sentence in truth:
            predicted.append([self.labels[i] for i in predicted_ids[start : start + len(sentence)]])
            start += len(sentence)
        return Evaluation(entity_metrics(truth, predicted), predicted)


def keep_best(
    best: dict[tuple[int, int], tuple[int, np.ndarray]], chunk: Sequence[dict[str, Any]], values: np.ndarray
) -> None:
    """Keep in `best`, by (example, word), the row of `values` (windows x tokens x ...) at the word's first
    sub-token from the window where that token has the most tokens on its narrower side."""
    for row, feature in enumerate(chunk):
        n = feature["length"]
        for position, word in enumerate(feature["starts"]):
            if word < 0:
                continue
            context = min(position, n - 1 - position)
            key = (feature["example"], word)
            if key not in best or context > best[key][0]:
                best[key] = (context, values[row, position])


def _word_at(text: str, words: Sequence[tuple[int, int]], start: int, end: int) -> str:
    """The text of the words an entity's offsets touch."""
    touched = [(a, b) for a, b in words if a < end and b > start]
    return text[touched[0][0] : touched[-1][1]] if touched else text[start:end]
