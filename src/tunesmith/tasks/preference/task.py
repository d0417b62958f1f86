"""Preference tuning: a decoder learns which of two answers people prefer (DPO, IPO, ORPO, SimPO) or whether
an answer is good (KTO), from TRL, OpenAI or KTO files (data/preference_formats.py).

Every answer is rendered and masked as a chat example (its prompt conversation, then the answer and the end of
its turn); chosen and rejected answers of a batch go through the model in one pass (scoring.py), each pair
packed with its prompt once where the attention allows (data/shared_prefix.py), and the reference
log-probabilities come from the same model with its adapter switched off (adapter methods) or from a frozen
copy of the base (full and freeze fine-tuning), stored with each example once computed (`loss`); prompt and
prefix tuning are refused for the losses that need a reference. Validation reports the loss, reward accuracy and margin, each side's log-probability, the
per-token KL to the reference, and preference accuracy (the model gives the chosen answer the higher
likelihood); it also writes answers to the first `eval_generate_examples` prompts and
scores them against the chosen answers (ROUGE), as chat does."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from tunesmith.data.chat_encoding import encode_chat
from tunesmith.data.checks.view import ExampleView, TokenCount
from tunesmith.data.preference_formats import PreferenceExample, read_preferences
from tunesmith.data.readers import FileFormat, OnError
from tunesmith.data.shared_prefix import collate_shared, shared_prefix_supported
from tunesmith.errors import DataError
from tunesmith.evaluation.bootstrap import Resampler, mean_resampler
from tunesmith.evaluation.text_metrics import rouge_per_example
from tunesmith.models.catalog import resolve_model
from tunesmith.models.running import evaluating, move
from tunesmith.tasks import TASKS
from tunesmith.tasks.answer_logits import backbone_and_head
from tunesmith.tasks.base import Evaluation
from tunesmith.tasks.generative import GenerativeParams, GenerativeTask
from tunesmith.tasks.preference.loss import LOSSES, PreferenceLoss, Scores
from tunesmith.tasks.preference.scoring import MISMATCHED, STORED, Reference, batch_scores, padded


class PreferenceParams(GenerativeParams):
    name: Literal["preference"] = "preference"
    format: Literal["auto", "trl", "openai", "kto"] = "auto"
    """Shape of each record; `auto` tells it from the first record's fields."""
    loss: str = "dpo"
    """The objective: dpo, ipo, orpo, simpo (pairs) or kto (single answers labelled desirable or not)."""
    loss_params: dict[str, Any] = Field(default_factory=dict)
    """The objective's own keys (dpo: beta, label_smoothing; kto: beta, desirable_weight, ...), checked
    against it; each default is documented in its module under tasks/preference/."""
    packing: bool = True
    """Each example's answers packed as one segment with their prompt once, several examples to a row, no
    padding (data/shared_prefix.py), where the model's attention takes a custom mask (eager, SDPA) and its
    output layer is a plain projection; else padded rows, every chosen one then every rejected one. Measured
    (bench/preference.py): the same scores from about half the tokens."""

    @model_validator(mode="after")
    def _known_loss(self) -> PreferenceParams:
        LOSSES.get(self.loss).Params(**self.loss_params)  # an unknown loss or key is refused here
        return self


@TASKS.register("preference")
class Preference(GenerativeTask):
    name = "preference"
    Params = PreferenceParams
    model_kinds = ("causal",)
    params: PreferenceParams
    default_metric = "reward_accuracy"
    headline = ("loss", "reward_accuracy", "reward_margin", "preference_accuracy", "reference_kl", "rougeL")

    def __init__(self, params: Any, model_cfg: Any):
        super().__init__(params, model_cfg)
        cls = LOSSES.get(params.loss)
        self.objective: PreferenceLoss = cls(cls.Params(**params.loss_params))
        self._slotted: list[dict[str, Any]] = []
        """Examples whose reference sums `loss` stores once computed, by their slot."""

    @classmethod
    def metric_for(cls, params: Any, metric: str | None) -> str:
        """KTO has no pairs to be accurate on: its default is the loss."""
        if metric is None and not LOSSES.get(params.loss).paired:
            return "loss"
        return metric or cls.default_metric

    @property
    def needs_reference_model(self) -> bool:
        return self.objective.needs_reference

    def prepare_model(self, model: torch.nn.Module) -> None:
        """A model without an adapter (full or freeze fine-tuning) cannot switch its training off to be its own
        reference: it is scored against a frozen copy of the base, loaded when first needed (one model more
        in memory, as TRL's DPO keeps for full fine-tuning)."""
        super().prepare_model(model)
        self.pack = (
            self.params.packing and shared_prefix_supported(model) and backbone_and_head(model) is not None
        )
        if self.objective.needs_reference and not hasattr(model, "disable_adapter"):
            self._tuned_whole = weakref.ref(model)

    def reference_for(self, model: torch.nn.Module) -> Reference:
        """The reference `model` is scored against: none when the objective needs none; the model with its
        adapter off; for a whole model tuned (prepare_model), the frozen base; else the model itself (the
        untuned base, measured before training, is its own reference)."""
        if not self.objective.needs_reference:
            return None
        if hasattr(model, "disable_adapter"):
            return "adapter off"
        tuned = getattr(self, "_tuned_whole", None)
        if tuned is None or tuned() is not model:
            return "itself"
        if getattr(self, "_frozen_base", None) is None:
            base = self.load_model(resolve_model(str(self.model_cfg.name)))
            self._frozen_base = base.eval().requires_grad_(False)
        return self._frozen_base.to(next(model.parameters()).device)

    # --- data ---
    def examples(
        self, path: Path, fmt: str | FileFormat, on_error: OnError | None = None
    ) -> Iterator[PreferenceExample]:
        for example in read_preferences(path, self.params.format, fmt, on_error):
            if (example.rejected is not None) == self.objective.paired:
                yield example
                continue
            error = DataError(
                example.path, example.line, self._shape_mismatch(), example.unit, "preference_structure"
            )
            if on_error is None:
                raise error
            on_error(error)

    def _shape_mismatch(self) -> str:
        if self.objective.paired:
            return (
                f"task.loss {self.objective.name} learns from chosen/rejected pairs, and this record is one "
                "answer labelled desirable or not (for those, task.loss kto)"
            )
        return "task.loss kto learns from answers labelled desirable or not, and this record is a pair (for pairs, task.loss dpo, ipo, orpo or simpo)"

    def turns(self, example: PreferenceExample) -> list[dict[str, str]]:
        return [*example.prompt, {"role": "assistant", "content": example.chosen}]

    def view(self, example: PreferenceExample) -> ExampleView:
        prompt = "\n".join(m["content"] for m in example.prompt if m["role"] != "system")
        return ExampleView(
            example.path, example.line, example.unit, prompt, example.chosen, False, rejected=example.rejected
        )

    def measure(self, examples: Sequence[PreferenceExample]) -> list[TokenCount]:
        """Each example by its longer side: a rejected answer cut off is as unusable as a chosen one."""
        chosen = super().measure(examples)
        pairs = [i for i, ex in enumerate(examples) if ex.rejected is not None]
        rejected = super().measure([replace(examples[i], chosen=examples[i].rejected) for i in pairs])
        out = list(chosen)
        for i, count in zip(pairs, rejected, strict=True):
            if count.problem or count.tokens > out[i].tokens:
                out[i] = count
        return out

    def example_scores(
        self, outputs: Sequence[str], references: Sequence[list[str]]
    ) -> dict[str, list[float]]:
        """ROUGE against the chosen answer; KTO: over the desirable completions only (an undesirable one is
        what the answer should not be)."""
        kept = [i for i, refs in enumerate(references) if refs]
        if not kept:
            return {}
        return rouge_per_example([outputs[i] for i in kept], [references[i][0] for i in kept])

    # --- retune: the serving task's data plus corrections ---
    record_params: ClassVar[dict[str, Any]] = {"format": "auto"}

    def traffic_text(self, logged_input: Any) -> str:
        """A logged chat's turns as `view` joins a prompt's (every turn but the system's)."""
        if not isinstance(logged_input, list):
            return str(logged_input)
        return "\n".join(
            str(m.get("content", ""))
            for m in logged_input
            if isinstance(m, dict) and m.get("role") != "system"
        )

    def record(self, example: PreferenceExample) -> dict[str, Any]:
        prompt = [dict(m) for m in example.prompt]
        if example.rejected is None:
            return {"prompt": prompt, "completion": example.chosen, "label": bool(example.desirable)}
        return {"prompt": prompt, "chosen": example.chosen, "rejected": example.rejected}

    def corrected_record(
        self, logged_input: Any, label: str | None, answer: str | None, output: Any = None
    ) -> dict[str, Any] | None:
        """A better answer: pairs, preferred over the answer the model gave (none when it gave the same or is
        unknown); KTO, a desirable completion."""
        if not answer or not isinstance(logged_input, list):
            return None
        if not self.objective.paired:
            return {"prompt": list(logged_input), "completion": answer, "label": True}
        if not isinstance(output, str) or output.strip() == answer.strip():
            return None
        return {"prompt": list(logged_input), "chosen": answer, "rejected": output}

    # --- encoding ---
    def encode(self, examples: Sequence[PreferenceExample], tokenizer: Any) -> list[dict[str, Any]]:
        features = self._encoded(examples, tokenizer)
        if not self.objective.paired and len(examples) > 1:
            for i, feature in enumerate(features):  # KTO: each prompt with the next example's completion
                other = examples[(i + 1) % len(examples)]
                turns = [*examples[i].prompt, {"role": "assistant", "content": other.chosen}]
                shifted = encode_chat(tokenizer, turns, self.model_cfg.max_length)
                feature["mismatched"] = (shifted.input_ids, shifted.labels)
        return features

    def _encoded(self, examples: Sequence[PreferenceExample], tokenizer: Any) -> list[dict[str, Any]]:
        features = []
        for ex in examples:
            sides = [ex.chosen] if ex.rejected is None else [ex.chosen, ex.rejected]
            encoded = [self._answer(tokenizer, ex, side) for side in sides]
            features.append(
                {
                    "rows": [(e.input_ids, e.labels) for e in encoded],
                    "desirable": ex.desirable,
                    "length": max(len(e.input_ids) for e in encoded),
                    "prompt_ids": self.prompt_ids(list(ex.prompt)),
                    "question": ex.prompt[-1]["content"],
                    "references": [] if ex.desirable is False else [ex.chosen],  # not an undesirable one
                }
            )
        return features

    def _answer(self, tokenizer: Any, ex: PreferenceExample, answer: str) -> Any:
        """One side, masked as chat masks it; an answer model.max_length would cut is an error (a preference
        between two cut answers is not the one the file states)."""
        max_length = self.model_cfg.max_length
        encoded = encode_chat(tokenizer, [*ex.prompt, {"role": "assistant", "content": answer}], max_length)
        if encoded.truncated:
            raise DataError(
                ex.path,
                ex.line,
                f"an answer is cut off: prompt and answer are {encoded.length} tokens, model.max_length is "
                f"{max_length}; raise model.max_length or shorten the example",
                ex.unit,
                "answer_cut_off",
            )
        return encoded

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """Paired: each pair's prompt once and both answers (packed), or every chosen row then every rejected
        row (padded), in one batch. KTO: one answer per example, and apart, each prompt with another example's
        completion (the KL reference point, as TRL and the paper estimate it: the completions shifted by one
        over the data)."""
        batch = self._rows([f["rows"] for f in features], pad_id)
        if not self.objective.paired:
            batch["desirable"] = torch.tensor([bool(f["desirable"]) for f in features])
            if all("mismatched" in f for f in features):
                shifted = self._rows([[f["mismatched"]] for f in features], pad_id)
                batch |= {MISMATCHED + k: v for k, v in shifted.items()}
        return batch | self._stored_references(features)

    def _stored_references(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The reference sums of a batch whose every example has them stored (in the batch's row order), else
        each example's slot, for `loss` to store them by."""
        if not self.objective.needs_reference:
            return {}
        if all(STORED in f for f in features):
            rows = len(features[0][STORED])
            stored = {STORED: torch.tensor([f[STORED][r] for r in range(rows) for f in features])}
            if MISMATCHED + STORED in features[0]:
                stored[MISMATCHED + STORED] = torch.tensor([f[MISMATCHED + STORED] for f in features])
            return stored
        for f in features:
            if "slot" not in f:
                f["slot"] = len(self._slotted)
                self._slotted.append(f)
        return {"slot": torch.tensor([f["slot"] for f in features])}

    def _rows(self, examples: Sequence[Sequence[Any]], pad_id: int) -> dict[str, torch.Tensor]:
        if self.pack:
            return collate_shared(examples, self.model_cfg.max_length, pad_id)
        return padded(
            [rows[0] for rows in examples] + [rows[1] for rows in examples if len(rows) > 1], pad_id
        )

    # --- loss ---
    def scores(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], with_kl: bool = False) -> Scores:
        """The batch's answer log-probabilities, with the reference's where the objective needs them."""
        return batch_scores(model, batch, self.objective.paired, self.reference_for(model), with_kl)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """The batch's summed loss. The reference's sums are computed the first time an example is trained on
        and stored with it: later epochs skip the reference pass (the reference never changes)."""
        reference = self.reference_for(model)
        stored = STORED in batch and reference is not None and reference != "itself"
        scores = batch_scores(
            model, batch, self.objective.paired, batch[STORED] if stored else reference, with_kl=False
        )
        if "slot" in batch and scores.reference_chosen is not None:
            self._store(batch["slot"].tolist(), scores)
        outcome = self.objective(scores)
        n = outcome.chosen_rewards.shape[0]
        return outcome.loss * n, n

    def _store(self, slots: list[int], scores: Scores) -> None:
        sides = [scores.reference_chosen, scores.reference_rejected]
        rows = [s.detach().float().cpu().tolist() for s in sides if s is not None]
        mismatched = scores.reference_mismatched
        for i, slot in enumerate(slots):
            feature = self._slotted[slot]
            feature[STORED] = [row[i] for row in rows]
            if mismatched is not None:
                feature[MISMATCHED + STORED] = float(mismatched[i])

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
        metrics, per_example = self._preference_metrics(model, features, batch_size, pad_id)
        outputs, scores, text_metrics = self.generated(model, features, batch_size, pad_id, during_training)
        if self.objective.paired and len(outputs) == len(features):  # every pair answered: resampled alike
            per_example |= scores
        metrics |= text_metrics
        metrics["examples"], metrics["generated"] = len(features), len(outputs)
        return Evaluation(metrics, outputs, per_example)

    def _preference_metrics(
        self, model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
    ) -> tuple[dict[str, Any], dict[str, list[float]]]:
        """Loss, rewards and likelihoods over every example, in the features' order."""
        order, losses, parts = [], [], []
        with evaluating(model) as device:
            for idx, chunk in self.length_sorted_batches(features, batch_size):
                scores = self.scores(model, move(self.collate(chunk, pad_id), device), with_kl=True)
                outcome = self.objective(scores)
                order += idx
                losses.append(float(outcome.loss) * len(idx))
                parts.append((scores, outcome))
        cat = lambda get: torch.cat([get(s, o) for s, o in parts]).double()  # noqa: E731
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        metrics: dict[str, Any] = {"loss": sum(losses) / max(len(order), 1)}
        chosen_reward = cat(lambda s, o: o.chosen_rewards)[back]
        metrics["chosen_logp"] = float(cat(lambda s, o: s.chosen).mean())
        if all(s.kl is not None for s, _ in parts):
            tokens = cat(lambda s, o: s.chosen_tokens).sum() + (
                cat(lambda s, o: s.rejected_tokens).sum() if self.objective.paired else 0
            )
            metrics["reference_kl"] = float(cat(lambda s, o: s.kl).sum() / tokens.clamp(min=1))
        if not self.objective.paired:
            metrics["reward"] = float(chosen_reward.mean())
            return metrics, {}
        margins = chosen_reward - cat(lambda s, o: o.rejected_rewards)[back]
        prefers = (cat(lambda s, o: s.chosen) > cat(lambda s, o: s.rejected))[back].double()
        right = (margins > 0).double()
        metrics |= {
            "rejected_logp": float(cat(lambda s, o: s.rejected).mean()),
            "reward_accuracy": float(right.mean()),
            "reward_margin": float(margins.mean()),
            "preference_accuracy": float(prefers.mean()),
        }
        per_example = {"reward_accuracy": right, "preference_accuracy": prefers, "reward_margin": margins}
        return metrics, {name: v.tolist() for name, v in per_example.items()}

    def resampler(self, features: Sequence[dict[str, Any]], evaluation: Evaluation) -> Resampler | None:
        """Reward and preference accuracy and the reward margin resample per pair (the paired bootstrap of
        tuned vs base)."""
        return mean_resampler(evaluation.example_scores) if evaluation.example_scores else None
