"""From a model to a loss's Scores: each answer's summed log-probability over its supervised tokens (the
answer and its end-of-turn token, located as chat training locates them: data/chat_encoding.encode_chat), with
chosen and rejected answers through the model in one concatenated batch, and the reference's log-probabilities
from the same model with its adapter switched off (peft's disable_adapter: no second copy of the weights)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from tunesmith.data.chat_encoding import IGNORE, EncodedChat, encode_chat
from tunesmith.tasks.preference.loss import Scores


def encode_pair(
    tokenizer: Any, prompt: Sequence[dict[str, str]], chosen: str, rejected: str, max_length: int
) -> tuple[EncodedChat, EncodedChat]:
    """The prompt conversation closed by each answer, encoded and masked exactly as a chat example."""
    return tuple(  # type: ignore[return-value]
        encode_chat(tokenizer, [*prompt, {"role": "assistant", "content": answer}], max_length)
        for answer in (chosen, rejected)
    )


def answer_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability of each row's supervised tokens, their count): position t's logits predict
    label t+1. Computed as logit - logsumexp, without a batch x length x vocabulary log-softmax copy."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != IGNORE
    picked = logits.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logp = (picked - logits.logsumexp(-1)) * mask
    return logp.sum(-1), mask.sum(-1)


def padded(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """(input ids, labels) rows right-padded, with labels IGNORE on padding, and the attention mask."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        n = len(row_ids)
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(row_ids), torch.tensor(row_labels), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def adapter_off(model: torch.nn.Module) -> AbstractContextManager[Any]:
    """The reference model: this one with its adapter disabled (a peft model), or, for a model without
    one (full fine-tuning keeps a frozen copy instead), refused here."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise ValueError("the reference is the model with its adapter disabled; this model has no adapter")
    return disable()


def pair_scores(
    model: torch.nn.Module,
    pairs: Sequence[tuple[EncodedChat, EncodedChat]],
    pad_id: int,
    reference: torch.nn.Module | None = None,
    with_reference: bool = True,
) -> Scores:
    """Scores of a batch of (chosen, rejected) encodings: one forward pass over all chosen rows followed by all
    rejected rows. The reference log-probabilities (without gradients) come from `reference` when given (a
    frozen copy), else from `model` with its adapter disabled; `with_reference` False skips them (ORPO, SimPO)."""
    rows = [(e.input_ids, e.labels) for e in [p[0] for p in pairs] + [p[1] for p in pairs]]
    batch = padded(rows, pad_id)
    device = next(model.parameters()).device
    return batch_scores(model, {k: v.to(device) for k, v in batch.items()}, True, reference, with_reference)


def batch_scores(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    paired: bool,
    reference: torch.nn.Module | None = None,
    with_reference: bool = True,
) -> Scores:
    """Scores of a padded batch (input_ids, attention_mask, labels): paired, its first half the chosen
    answers and its second the rejected ones; else one completion per row (KTO, with `desirable` in the batch
    when it has it)."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    labels = batch["labels"]
    summed, counts = answer_logps(model(**inputs).logits, labels)
    ref = None
    if with_reference:
        context = nullcontext() if reference is not None else adapter_off(model)
        with torch.no_grad(), context:
            ref, _ = answer_logps((reference or model)(**inputs).logits, labels)
    if not paired:
        return Scores(summed, counts, reference_chosen=ref, desirable=batch.get("desirable"))
    n = summed.shape[0] // 2
    scores = Scores(summed[:n], counts[:n], summed[n:], counts[n:])
    if ref is not None:
        scores.reference_chosen, scores.reference_rejected = ref[:n], ref[n:]
    return scores
