"""From a model to a loss's Scores: each answer's summed log-probability over its supervised tokens (the
answer and its end-of-turn token, located as chat training locates them: data/chat_encoding.encode_chat), with
chosen and rejected answers through the model in one batch: packed with their prompt once where the model's
attention takes a custom mask (data/shared_prefix.py), else as padded rows, every chosen row then every
rejected row.

Only the positions that predict an answer token go through the output layer (tasks/answer_logits.py), as in
chat training: the prompt's positions never make a vocabulary-wide row. The reference is whatever the task
says: the same model with its adapter switched off (peft's disable_adapter: no second copy of the weights), a
frozen copy of the base (full fine-tuning), the model itself (the untuned base is its own reference: its
log-probabilities are reused, not computed twice), or none (ORPO, SimPO)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Literal

import torch
from torch.nn import functional as F

from tunesmith.data.chat_encoding import IGNORE
from tunesmith.data.packing import attention_implementation
from tunesmith.data.shared_prefix import attention_mask
from tunesmith.tasks.answer_logits import answer_logits, backbone_and_head
from tunesmith.tasks.preference.loss import Scores

Reference = torch.nn.Module | torch.Tensor | Literal["adapter off", "itself"] | None
"""Where the reference log-probabilities come from: a frozen model, the model with its adapter switched off,
the model itself, already computed (a tensor of each row's sum, in the batch's row order), or nowhere."""

STORED = "reference_logps"
"""Key of a batch's stored reference sums (and, with the MISMATCHED prefix, its mismatched rows')."""


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


def target_logits(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, target, row) of every supervised token of the batch, one row of logits per token."""
    if "target_index" in batch:
        return shared_target_logits(model, batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    logits, targets = answer_logits(model, inputs)
    labels = batch["labels"]
    if logits.dim() == 3:  # the model's own forward kept whole columns: drop the rows' unsupervised cells
        rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(targets)
        kept = targets != IGNORE
        return logits[kept], targets[kept], rows[kept]
    return logits, targets, (labels[:, 1:] != IGNORE).nonzero()[:, 0]


def shared_target_logits(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """target_logits of a batch packed with each prompt once (data/shared_prefix.py): the decoder stack over the
    packed rows under their mask, then the output layer at each target's predicting position only."""
    split = backbone_and_head(model)
    if split is None:
        raise ValueError("a packed preference batch needs a model whose output layer is a plain projection")
    backbone, head = split
    mask = attention_mask(batch["allowed"], attention_implementation(model))
    hidden = backbone(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=mask, use_cache=False
    ).last_hidden_state
    return head(hidden.flatten(0, 1)[batch["target_index"]]), batch["target_ids"], batch["target_row"]


def answer_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed log-probability of each row's supervised tokens, their count, the token logits, each token's
    row)."""
    logits, targets, rows = target_logits(model, batch)
    token_logps = -F.cross_entropy(logits.float(), targets, reduction="none")
    n = int(batch["score_rows"]) if "score_rows" in batch else batch["labels"].shape[0]
    summed = torch.zeros(n, device=logits.device).index_add(0, rows, token_logps)
    return summed, torch.bincount(rows, minlength=n), logits, rows


def token_kl(policy: torch.Tensor, reference: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Each row's summed KL(policy || reference) over the next-token distributions at its answer positions."""
    log_p, log_q = policy.detach().float().log_softmax(-1), reference.float().log_softmax(-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    return torch.zeros(n, device=policy.device).index_add(0, rows, per_token)


def reference_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], reference: Reference, own: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(each row's summed reference log-probability, the reference's token logits where it ran), without
    gradients; `own` is the model's own sums, which "itself" reuses."""
    if reference is None:
        return None, None
    if isinstance(reference, torch.Tensor):
        return reference, None
    if reference == "itself":
        return own.detach(), None
    context = model.disable_adapter() if reference == "adapter off" else nullcontext()  # type: ignore[operator]
    with torch.no_grad(), context:
        scorer = model if reference == "adapter off" else reference
        summed, _, logits, _ = answer_logps(scorer, batch)  # type: ignore[arg-type]
    return summed, logits


MISMATCHED = "mismatched_"
"""Prefix of a KTO batch's mismatched rows (each prompt with another example's completion): they estimate
the KL reference point, without gradients."""


def batch_scores(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    paired: bool,
    reference: Reference,
    with_kl: bool = False,
) -> Scores:
    """Scores of a padded batch (input_ids, attention_mask, labels): paired, its first half the chosen
    answers and its second the rejected ones; else one completion per row (KTO, with `desirable` and the
    mismatched rows in the batch when it has them). `with_kl` adds each row's KL to the reference (validation
    only: it keeps both models' logits)."""
    summed, counts, logits, rows = answer_logps(model, batch)
    ref, ref_logits = reference_logps(model, batch, reference, summed)
    kl = None
    if with_kl and isinstance(reference, str) and reference == "itself":
        kl = torch.zeros_like(summed)
    elif with_kl and ref_logits is not None:
        kl = token_kl(logits, ref_logits, rows, summed.shape[0])
    if not paired:
        scores = Scores(summed, counts, reference_chosen=ref, desirable=batch.get("desirable"), kl=kl)
        if MISMATCHED + "input_ids" in batch and ref is not None:
            shifted = {k.removeprefix(MISMATCHED): v for k, v in batch.items() if k.startswith(MISMATCHED)}
            with torch.no_grad():
                scores.mismatched = answer_logps(model, shifted)[0]
            stored = shifted[STORED] if isinstance(reference, torch.Tensor) else reference
            scores.reference_mismatched, _ = reference_logps(model, shifted, stored, scores.mismatched)
        return scores
    n = summed.shape[0] // 2
    scores = Scores(summed[:n], counts[:n], summed[n:], counts[n:], kl=kl)
    if ref is not None:
        scores.reference_chosen, scores.reference_rejected = ref[:n], ref[n:]
    return scores
