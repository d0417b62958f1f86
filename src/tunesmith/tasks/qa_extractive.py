"""Extractive question answering on an encoder: a span head scores each context token as the answer's start
and end. A context longer than model.max_length is cut into overlapping windows (`stride` tokens shared); a
window that does not hold the answer is trained to point at the [CLS] token, and at inference the best span
over all windows of an example wins (start + end score, end not before start, at most `max_answer_tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.data.checks.view import TokenCount
from tunesmith.data.padding import pad
from tunesmith.data.squad import QAExample
from tunesmith.evaluation.forgetting import GeneralAbility, encoder_ability
from tunesmith.evaluation.text_metrics import squad_scores
from tunesmith.models.loader import load_pretrained
from tunesmith.models.running import evaluating, move
from tunesmith.tasks.base import Evaluation
from tunesmith.tasks.qa import GenerativeQA

TOP_K = 20
"""Start and end candidates considered per window."""


class ExtractiveQA(GenerativeQA):
    model_kinds = ("encoder",)
    scores_input_positions = True
    endpoint = "none"  # answers need a context beside the question: `predict --file`, not the chat endpoint
    peft_task_type = "QUESTION_ANS"
    headline = ("loss", "exact_match", "f1")
    source_field = None  # a long context is read in windows, never shortened
    baseline_description = ""

    @classmethod
    def metric_for(cls, params: Any, metric: str | None) -> str:
        return metric or cls.default_metric  # spans are scored without generating, whatever the params say

    # reading, references and scoring come from GenerativeQA; the rest is span prediction
    def use_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def state(self) -> dict[str, Any]:
        return {"extractive": True}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def prepare_model(self, model: torch.nn.Module) -> None:
        pass

    @property
    def converses(self) -> bool:
        return False

    def predict(self, model: torch.nn.Module, inputs: list[Any], pad_id: int) -> list[dict[str, Any]]:
        """The best span of each context (read in windows) for its question."""
        answers = self.evaluate(model, self.encode(inputs, self.tokenizer), 32, pad_id).predictions
        return self.answered(inputs, answers)

    def load_model(self, resolved: Any, **load_kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForQuestionAnswering

        return load_pretrained(AutoModelForQuestionAnswering, resolved, self.model_cfg, **load_kwargs)

    def encode(self, examples: Sequence[QAExample], tokenizer: Any) -> list[dict[str, Any]]:
        max_length = self.model_cfg.max_length
        stride = min(self.params.stride, max_length // 2)
        enc = tokenizer(
            [ex.question for ex in examples],
            [ex.context for ex in examples],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        features = []
        for w, ids in enumerate(enc["input_ids"]):
            index = enc["overflow_to_sample_mapping"][w]
            ex = examples[index]
            sequence = enc.sequence_ids(w)
            offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][w], sequence, strict=True)]
            start = end = 0
            if ex.answers:
                a, b = ex.starts[0], ex.starts[0] + len(ex.answers[0])
                inside = [i for i, o in enumerate(offsets) if o is not None and o[0] < b and o[1] > a]
                if inside and offsets[inside[0]][0] <= a and offsets[inside[-1]][1] >= b:
                    start, end = inside[0], inside[-1]
            feature = {
                "input_ids": ids,
                "length": len(ids),
                "start": start,
                "end": end,
                "example": index,
                "offsets": offsets,
                "context": ex.context,
                "references": list(ex.answers),
                "question": ex.question,
            }
            if "token_type_ids" in enc:
                feature["token_type_ids"] = enc["token_type_ids"][w]
            features.append(feature)
        return features

    def measure(self, examples: Sequence[QAExample]) -> list[TokenCount]:
        """Question and context tokens; never truncated: a long context is read in overlapping windows."""
        ids = self.tokenizer([ex.question for ex in examples], [ex.context for ex in examples])["input_ids"]
        return [TokenCount(len(i), False) for i in ids]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        ids, mask = pad([f["input_ids"] for f in features], pad_id)
        types, _ = pad([f.get("token_type_ids", ()) for f in features], 0)
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        batch["start_positions"] = torch.tensor([f["start"] for f in features])
        batch["end_positions"] = torch.tensor([f["end"] for f in features])
        return batch

    def _logits(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        )
        return out.start_logits.float(), out.end_logits.float()

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        start, end = self._logits(model, batch)
        return _span_loss(start, end, batch), int(batch["input_ids"].shape[0])

    def evaluate(
        self,
        model: torch.nn.Module,
        features: Sequence[dict[str, Any]],
        batch_size: int,
        pad_id: int,
        *,
        during_training: bool = False,
    ) -> Evaluation:
        total, best = 0.0, {}
        with evaluating(model) as device:
            for idx, chunk in self.length_sorted_batches(features, batch_size):
                batch = move(self.collate(chunk, pad_id), device)
                starts, ends = self._logits(model, batch)
                total += _span_loss(starts, ends, batch).item()
                for row, i in enumerate(idx):
                    f = features[i]
                    span = self._best_span(starts[row].cpu(), ends[row].cpu(), f["offsets"])
                    if span is not None and (f["example"] not in best or span[0] > best[f["example"]][0]):
                        best[f["example"]] = (span[0], f["context"][span[1] : span[2]])
        order = sorted({f["example"]: f for f in features}.items())
        predictions = [best.get(example, (0.0, ""))[1] for example, _ in order]
        references = [f["references"] for _, f in order]
        metrics: dict[str, Any] = {"loss": total / max(len(features), 1)}
        if all(references):
            metrics.update(squad_scores(predictions, references))
        metrics["examples"] = len(order)
        return Evaluation(metrics, predictions)

    def _best_span(
        self, starts: torch.Tensor, ends: torch.Tensor, offsets: list[Any]
    ) -> tuple[float, int, int] | None:
        allowed = torch.tensor([o is not None for o in offsets] + [False] * (len(starts) - len(offsets)))
        starts = starts.masked_fill(~allowed, float("-inf"))
        ends = ends.masked_fill(~allowed, float("-inf"))
        best = None
        for s in starts.topk(min(TOP_K, int(allowed.sum()))).indices.tolist():
            for e in ends.topk(min(TOP_K, int(allowed.sum()))).indices.tolist():
                if e < s or e - s + 1 > self.params.max_answer_tokens:
                    continue
                score = float(starts[s] + ends[e])
                if best is None or score > best[0]:
                    best = (score, offsets[s][0], offsets[e][1])
        return best

    def shown_examples(
        self, features: Sequence[dict[str, Any]], tuned: Evaluation, base: Evaluation | None
    ) -> list[dict[str, Any]]:
        firsts = list({f["example"]: f for f in features}.values())[:5]
        return [
            {
                "prompt": f["question"],
                "reference": f["references"][0] if f["references"] else "",
                "tuned": tuned.predictions[f["example"]],
            }
            for f in firsts
        ]

    def general_ability(self, model: torch.nn.Module) -> GeneralAbility | None:
        return encoder_ability(model, self.tokenizer, self.model_cfg.max_length)

    def evaluate_baseline(self, resolved: Any, examples: Sequence[Any], path: Path) -> Evaluation | None:
        return None  # an encoder without a trained span head has no answer to give


def _span_loss(starts: torch.Tensor, ends: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed over windows: the mean of the start and end cross-entropies."""
    start_loss = F.cross_entropy(starts, batch["start_positions"], reduction="sum")
    return (start_loss + F.cross_entropy(ends, batch["end_positions"], reduction="sum")) / 2
