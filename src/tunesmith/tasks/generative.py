"""What every text-writing task shares: examples are conversations whose last assistant turn is the answer.

A chat example is a conversation as read; summarization and generative QA build one from their columns (a
user turn from a prompt template, the target as the assistant turn). From there:

- decoder models: rendered with the chat template, loss only on assistant tokens (`encode_chat`), packed
  several to a row (`data/packing.py`); generation starts from `encode_prompt`, the same call `predict`,
  `chat` and the server use.
- encoder-decoder models (T5, BART): the prompt text is the encoder input and the answer plus EOS the target.

Validation computes the loss (and perplexity) on every example and generates on the first
`eval_generate_examples` of them, so the best checkpoint can be chosen on ROUGE-L, BLEU or exact match
without generation dominating training time; the final evaluation generates on all.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from tunesmith.data.chat_encoding import (
    IGNORE,
    TemplateError,
    answer_spans,
    encode_chat,
    encode_prompt,
    ensure_template,
    render_chat,
    render_prompt,
    stop_token_ids,
)
from tunesmith.data.chat_formats import Conversation
from tunesmith.data.checks.view import TokenCount
from tunesmith.data.packing import collate_packed, collate_padded, packing_supported
from tunesmith.data.padding import pad
from tunesmith.decoding import DecodeBatch
from tunesmith.errors import ConfigError, DataError, UserError
from tunesmith.evaluation.bootstrap import Resampler, mean_resampler
from tunesmith.evaluation.forgetting import ANSWER_TOKENS, GeneralAbility, decoder_ability
from tunesmith.evaluation.text_metrics import perplexity
from tunesmith.generation import GenerationSettings, TokenObserver, generate
from tunesmith.methods.prompt_learning import is_prompt_learning
from tunesmith.models.loader import load_pretrained
from tunesmith.models.running import evaluating, move
from tunesmith.models.segment_attention import segment_attention_supported, use_segment_attention
from tunesmith.plugin import PluginParams
from tunesmith.tasks.answer_logits import answer_loss
from tunesmith.tasks.base import Evaluation, Task
from tunesmith.tasks.linear_cross_entropy import summed_token_cross_entropy

EXAMPLES_SHOWN = 5
"""Example outputs kept in an evaluation report (base and tuned side by side)."""


class GenerativeParams(PluginParams):
    train_on_prompt: bool = False
    """Also train on system/user tokens and template glue (default: only assistant answers)."""
    packing: bool = True
    """Pack the examples of a batch into rows (no padding) where the model supports it; see data/packing.py."""
    eval_generate_examples: int = Field(32, ge=0)
    """Validation during training generates on at most this many examples (0: loss only)."""
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


class GenerativeTask(Task):
    """A task whose answer is text. Subclasses read their files into conversations and score outputs."""

    params: GenerativeParams
    default_metric = "rougeL"
    default_max_length = 512
    default_group_by_length = False
    default_model = "smollm2-135m-instruct"
    headline = ("loss", "perplexity", "rouge1", "rouge2", "rougeL", "bleu", "chrf")
    endpoint = "chat"

    @classmethod
    def metric_for(cls, params: PluginParams, metric: str | None) -> str:
        """With `eval_generate_examples: 0` validation generates nothing: the default metric becomes the loss,
        and a metric of generated text is refused before training starts."""
        if getattr(params, "eval_generate_examples", 1) > 0:
            return super().metric_for(params, metric)
        if metric in (None, "loss", "perplexity"):
            return metric or "loss"
        raise ConfigError(
            f"train.metric {metric} is scored on generated text, but task.eval_generate_examples is 0 so "
            "validation generates none; set eval_generate_examples above 0 or train.metric=loss"
        )

    source_field: str | None = None
    """The example's field that loses its end when the whole conversation is longer than model.max_length
    (the document to summarise, the context of a question), so the instruction, the question and the answer
    always stay whole; None (chat): nothing is shortened, and a conversation cut before its answer is an
    error."""
    source_name = "source text"

    def __init__(self, params: PluginParams, model_cfg: Any):
        super().__init__(params, model_cfg)
        self.encoder_decoder = False
        self.pack = False
        self.one_row = False
        self.template = ""
        self.decoder_start = 0
        self._fitted: dict[Any, tuple[Any, int | None]] = {}

    # --- what subclasses provide ---

    @abstractmethod
    def example_scores(
        self, outputs: Sequence[str], references: Sequence[list[str]]
    ) -> dict[str, list[float]]:
        """Each answer's scores against its example's accepted answers (ROUGE, exact match...): the task
        metrics that are means over answers, which the bootstrap resamples."""

    def corpus_scores(self, outputs: Sequence[str], references: Sequence[list[str]]) -> dict[str, float]:
        """Task metrics over the whole set that are not means of per-answer scores (BLEU, chrF); none here."""
        return {}

    def general_ability(self, model: torch.nn.Module) -> GeneralAbility | None:
        if self.encoder_decoder:
            return None  # a seq2seq model's perplexity on plain text is not defined the same way

        def answers(prompts: Sequence[str]) -> list[str]:
            ids = [self.prompt_ids([{"role": "user", "content": p}]) for p in prompts]
            settings = GenerationSettings(max_new_tokens=ANSWER_TOKENS)
            return self.generate_texts(model, ids, len(ids), self.tokenizer.pad_token_id, settings)

        return decoder_ability(model, self.tokenizer, self.model_cfg.max_length, answers)

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        if len(evaluation.predictions) != len(features):
            return None
        scores = evaluation.example_scores or self.example_scores(
            evaluation.predictions, [f["references"] for f in features]
        )
        return mean_resampler(scores) if scores else None

    def turns(self, example: Any) -> list[dict[str, str]]:
        """The conversation trained on, ending with the answer: a chat up to its last assistant turn (turns
        after it have nothing to learn from); other tasks build it from their columns."""
        last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
        return list(example.messages[: last + 1])

    def references(self, example: Any) -> list[str]:
        """Accepted answers of an example (one by default: the answer turn)."""
        return [self.turns(example)[-1]["content"]]

    # --- data ---
    def fit(self, train: list[Conversation], others: dict[str, list[Conversation]]) -> None:
        pass

    def state(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            "chat_template": self.template,
            "eos_token": tok.eos_token,
            "stop_token_ids": stop_token_ids(tok),
            "encoder_decoder": self.encoder_decoder,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.encoder_decoder = bool(state.get("encoder_decoder", False))
        self.template = state.get("chat_template", "")

    def use_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer.eos_token is None and tokenizer.sep_token is not None:
            tokenizer.eos_token = tokenizer.sep_token  # BERT-style vocabularies end a sequence with [SEP]
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not self.encoder_decoder:
            try:
                saved = self.template
                self.template = ensure_template(tokenizer)
            except TemplateError as exc:
                raise UserError(str(exc)) from None
            if saved and saved != self.template:
                raise UserError(
                    "the run's tokenizer carries a different chat template than the one it was trained with; "
                    "the model folder was modified"
                )
        super().use_tokenizer(tokenizer)

    # --- model ---
    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        auto = AutoModelForSeq2SeqLM if self.encoder_decoder else AutoModelForCausalLM
        model = load_pretrained(auto, resolved, self.model_cfg, **load_kwargs)
        model.config.use_cache = False
        return model

    def base_model_key(self) -> tuple[Any, ...]:
        """Every text-writing task loads the same language model, head and all (chat, preference, ...): one
        task's trained weights can start another's (train.init_from), and one loaded base serves both."""
        return ("generative", self.model_kind)

    def prepare_model(self, model: torch.nn.Module) -> None:
        self.pack = self.params.packing and not self.encoder_decoder and packing_supported(model)
        # a packed batch as one row, each example attending to itself alone (no dense mask, no padding)
        self.one_row = self.pack and segment_attention_supported(model)
        if self.one_row:
            use_segment_attention(model)
        if self.encoder_decoder:
            start = model.config.decoder_start_token_id
            self.decoder_start = start if start is not None else self.tokenizer.pad_token_id

    def set_model_kind(self, kind: str) -> None:
        super().set_model_kind(kind)
        self.encoder_decoder = kind == "seq2seq"

    # --- encoding ---
    def fitted(self, example: Any) -> tuple[Any, int | None]:
        """The example as checked, trained and evaluated, and its whole length in tokens when that is over
        model.max_length and its `source_field` was shortened to fit (else None). The source loses just
        enough tokens from its end; when even an empty one would not fit, the example stays as it is (and
        its answer is cut off: an error, from `measure` and `encode` alike)."""
        if self.source_field is None or self.encoder_decoder or self.tokenizer is None:
            return example, None
        if example in self._fitted:
            return self._fitted[example]
        limit, total = self.model_cfg.max_length, self._conversation_tokens(example)
        result: tuple[Any, int | None] = (example, None)
        if total > limit:
            ids = self.tokenizer(getattr(example, self.source_field), add_special_tokens=False)["input_ids"]
            over = total - limit
            for _ in range(4):  # a cut can re-tokenize the text around it a token or two longer
                keep = len(ids) - over
                if keep <= 0:
                    break
                shorter = replace(example, **{self.source_field: self.tokenizer.decode(ids[:keep]).rstrip()})
                now = self._conversation_tokens(shorter)
                if now <= limit:
                    result = (shorter, total)
                    break
                over += now - limit
        self._fitted[example] = result
        return result

    def cut_description(self) -> str:
        """What an example that `fitted` shortened loses, as the data check says it."""
        return f"the end of their {self.source_name}"

    def _conversation_tokens(self, example: Any) -> int:
        text = render_chat(self.tokenizer, self.turns(example))
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_messages(self, example: Any) -> list[dict[str, str]]:
        """Everything before the answer (the last assistant turn)."""
        return self.turns(example)[:-1]

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids a model answers from, exactly as at inference."""
        if self.encoder_decoder:
            text = "\n\n".join(m["content"] for m in messages)
            return self.tokenizer(text, truncation=True, max_length=self.model_cfg.max_length)["input_ids"]
        return encode_prompt(self.tokenizer, messages, self.model_cfg.max_length)

    def encode(self, examples: Sequence[Conversation], tokenizer: Any) -> list[dict[str, Any]]:
        max_length = self.model_cfg.max_length
        features = []
        for original in examples:
            ex = self.fitted(original)[0]
            messages = self.prompt_messages(ex)
            prompt = self.prompt_ids(messages)
            shown = {
                "question": messages[-1]["content"] if messages else "",
                "references": self.references(ex),
            }
            if self.encoder_decoder:
                target = tokenizer(shown["references"][0], add_special_tokens=True)["input_ids"]
                target = target[:max_length]
                features.append(
                    {
                        "input_ids": prompt,
                        "labels": target,
                        "length": len(prompt) + len(target),
                        "prompt_ids": prompt,
                        **shown,
                    }
                )
                continue
            encoded = encode_chat(tokenizer, self.turns(ex), max_length, self.params.train_on_prompt)
            problem = self._cut_off(sum(1 for label in encoded.labels[1:] if label != IGNORE), len(prompt))
            if problem:
                raise DataError(ex.path, ex.line, problem, ex.unit, "answer_cut_off")
            features.append(
                {
                    "input_ids": encoded.input_ids,
                    "labels": encoded.labels,
                    "length": len(encoded.input_ids),
                    "prompt_ids": prompt,
                    **shown,
                }
            )
        return features

    def _cut_off(self, answer_tokens: int, prompt_tokens: int) -> str | None:
        """Why a conversation has nothing to learn within max_length, if it has not: no supervised token
        left, or (answers only) the prompt before the last answer fills max_length."""
        max_length = self.model_cfg.max_length
        if answer_tokens == 0 or (not self.params.train_on_prompt and prompt_tokens >= max_length):
            return (
                f"the answer is cut off: the conversation is longer than model.max_length={max_length} "
                "tokens before its last answer starts; raise model.max_length or shorten the example"
            )
        return None

    def measure(self, examples: Sequence[Any]) -> list[TokenCount]:
        """Batched, and cheaper than `encode` (no labels): the same renders and rule, one tokenization. An
        example whose source text was shortened to fit (`fitted`) counts as cut, with its whole length."""
        if not examples:
            return []
        fitted = [self.fitted(ex) for ex in examples]
        counts = self._measure([ex for ex, _ in fitted])
        cut = self.cut_description()
        return [
            count if whole is None else TokenCount(whole, True, count.problem, count.problem_kind, cut)
            for count, (_, whole) in zip(counts, fitted, strict=True)
        ]

    def _measure(self, examples: Sequence[Any]) -> list[TokenCount]:
        limit, tok, n = self.model_cfg.max_length, self.tokenizer, len(examples)
        if self.encoder_decoder:
            sources = ["\n\n".join(m["content"] for m in self.prompt_messages(ex)) for ex in examples]
            ids = tok([*sources, *(self.references(ex)[0] for ex in examples)])["input_ids"]
            return [
                TokenCount(len(s) + len(t), max(len(s), len(t)) > limit)
                for s, t in zip(ids[:n], ids[n:], strict=True)
            ]
        prompts, rests, unusable = [], [], {}
        for i, ex in enumerate(examples):
            try:
                text, spans = answer_spans(tok, self.turns(ex))
            except TemplateError as exc:
                unusable[i] = (
                    f"{exc} (for this conversation: a chat that opens with an assistant turn often does this "
                    "with templates that add a default system prompt; start it with a user or system turn)"
                )
                text, spans = "", [(0, 0)]
            start = spans[-1][0]  # the text before the last answer is exactly the generation prompt
            prompts.append(text[:start])
            rests.append(text[start:])
        ids = tok([*prompts, *rests], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        counts = []
        for i, (prompt_ids, rest_ids) in enumerate(zip(ids[:n], ids[n:], strict=True)):
            p, total = len(prompt_ids), len(prompt_ids) + len(rest_ids)
            within = min(total, limit)
            answer = within - 1 if self.params.train_on_prompt else max(0, within - p)
            if i in unusable:
                counts.append(TokenCount(total, False, unusable[i], "chat_structure"))
            else:
                counts.append(TokenCount(total, total > limit, self._cut_off(answer, p)))
        return counts

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        if self.encoder_decoder:
            return _collate_seq2seq(features, pad_id, self.decoder_start)
        if self.pack:
            return collate_packed(features, self.model_cfg.max_length, pad_id, one_row=self.one_row)
        return collate_padded(features, pad_id)

    # --- loss ---
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        if not self.encoder_decoder:
            return answer_loss(model, batch)
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
        ).logits
        return summed_token_cross_entropy(logits, batch["labels"], IGNORE)

    # --- evaluation ---
    def summed_loss(
        self, model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
    ) -> tuple[float, int]:
        """(summed negative log-likelihood, count) of the features' supervised tokens: the validation loss
        before it is divided, in length-sorted batches."""
        total, count = 0.0, 0
        with evaluating(model) as device:
            for _, chunk in self.length_sorted_batches(features, batch_size):
                loss, n = self.loss(model, move(self.collate(chunk, pad_id), device))
                total, count = total + loss.item(), count + n
        return total, count

    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        total, count = self.summed_loss(model, features, batch_size, pad_id)
        metrics: dict[str, Any] = {
            "loss": total / max(count, 1),
            "perplexity": perplexity(total, max(count, 1)),
        }
        outputs, scores, text_metrics = self.generated(model, features, batch_size, pad_id, during_training)
        metrics |= text_metrics
        metrics["examples"] = len(features)
        metrics["generated"] = len(outputs)
        return Evaluation(metrics, outputs, scores)

    def generated(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        during_training: bool,
    ) -> tuple[list[str], dict[str, list[float]], dict[str, float]]:
        """Answers to the first `eval_generate_examples` prompts (to every prompt after training), each answer's
        scores against its references, and their means with the corpus-level scores."""
        limit = self.params.eval_generate_examples if during_training else len(features)
        chosen = list(features[:limit])
        if not chosen:
            return [], {}, {}
        outputs = self.generate_texts(model, [f["prompt_ids"] for f in chosen], batch_size, pad_id)
        references = [f["references"] for f in chosen]
        scores = self.example_scores(outputs, references)
        metrics = {name: sum(v) / len(v) for name, v in scores.items()}
        return outputs, scores, metrics | self.corpus_scores(outputs, references)

    def shown_examples(
        self, features: Sequence[dict[str, Any]], tuned: Evaluation, base: Evaluation | None
    ) -> list[dict[str, Any]]:
        shown = []
        for i, f in enumerate(features[:EXAMPLES_SHOWN]):
            row = {
                "prompt": f["question"],
                "reference": next(iter(f["references"]), ""),
                "tuned": tuned.predictions[i],
            }
            if base is not None and i < len(base.predictions):
                row["base"] = base.predictions[i]
            shown.append(row)
        return shown

    def generate_texts(
        self,
        model: torch.nn.Module,
        prompts: Sequence[list[int]],
        batch_size: int,
        pad_id: int,
        settings: GenerationSettings | None = None,
    ) -> list[str]:
        """Answers to token-id prompts, with the task's generation settings unless `settings` is given."""
        return [self.decode(t) for t in self.generate_tokens(model, prompts, batch_size, pad_id, settings)]

    def generate_tokens(
        self,
        model: torch.nn.Module,
        prompts: Sequence[list[int]],
        batch_size: int,
        pad_id: int,
        settings: GenerationSettings | None = None,
        observer: TokenObserver | None = None,
    ) -> list[list[int]]:
        """New token ids (cut at the stop token); `observer` follows a single prompt token by token."""
        return generate(
            model,
            prompts,
            settings or self.params.generation,
            pad_id=pad_id,
            stop_ids=stop_token_ids(self.tokenizer),
            batch_size=batch_size,
            encoder_decoder=self.encoder_decoder,
            observer=observer,
        )

    def decode_batch(self, model: torch.nn.Module, cache_bytes: int, max_rows: int) -> DecodeBatch | None:
        """A continuous batch in which the server decodes this task's answers (decoding.py), or None where
        answers decode one at a time (encoder-decoders; prompt and prefix tuning, which `generate` gets wrong)."""
        if self.encoder_decoder or is_prompt_learning(model):
            return None
        return DecodeBatch(
            model,
            stop_ids=stop_token_ids(self.tokenizer),
            cache_bytes=cache_bytes,
            max_rows=max_rows,
        )

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def messages_for_text(self, text: str) -> list[dict[str, str]]:
        """The prompt for one raw input of `predict` (a user message by default)."""
        return [{"role": "user", "content": text}]

    def sample_messages(
        self, texts: Sequence[str], questions: Sequence[tuple[str, str]]
    ) -> list[list[dict[str, str]]]:
        """Prompts of this task's kind for fixed inputs (an export is checked on them): `texts` as raw inputs
        of `predict`; QA asks `questions` ((question, context) pairs) instead."""
        return [self.messages_for_text(text) for text in texts]

    @property
    def converses(self) -> bool:
        return not self.encoder_decoder

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        """For each raw input (a user message for chat, a document for summarization), the model's answer."""
        prompts = [self.prompt_ids(self.messages_for_text(text)) for text in inputs]
        answers = self.generate_texts(model, prompts, 16, pad_id)
        return [{"input": text, "output": answer} for text, answer in zip(inputs, answers, strict=True)]

    def prediction_line(self, row: dict[str, Any], top: int) -> str:
        return row["output"]

    def answer(self, model: torch.nn.Module, messages: Sequence[dict[str, str]], pad_id: int) -> str:
        """One reply to a conversation, rendered exactly as in training (for `chat` and `predict`)."""
        return self.generate_texts(model, [self.prompt_ids(messages)], 1, pad_id)[0]

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        return render_prompt(self.tokenizer, messages)

    # --- the base model: the same prompts, zero-shot ---
    baseline_description = "base = the untuned pretrained model answering the same prompts (zero-shot)"

    def init_head(self, model: torch.nn.Module, baseline_path: Path | None) -> bool:
        return (
            True  # no new head: the pretrained LM head writes the answers, so the untrained model is the base
        )

    def evaluate_baseline(
        self, resolved: Any, examples: Sequence[Conversation], path: Path
    ) -> Evaluation | None:
        model = self.load_model(resolved)
        features = self.encode(examples, self.tokenizer)
        return self.evaluate(model, features, 16, self.tokenizer.pad_token_id)


def _collate_seq2seq(
    features: Sequence[dict[str, Any]], pad_id: int, start_id: int
) -> dict[str, torch.Tensor]:
    ids, mask = pad([f["input_ids"] for f in features], pad_id)
    labels, _ = pad([f["labels"] for f in features], IGNORE)
    decoder_inputs = torch.full_like(labels, start_id)
    decoder_inputs[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == IGNORE, pad_id)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "decoder_input_ids": decoder_inputs}
