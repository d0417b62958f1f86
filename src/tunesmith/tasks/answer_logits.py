"""The logits a loss over answer tokens needs, and no more: the vocabulary projection is the largest matrix of a
small LM (a fifth of SmolLM2-135M) and its output the largest activation, so only the positions that predict a
supervised token go through it. Shared by the generative tasks' cross-entropy and preference scoring."""

from __future__ import annotations

import torch

from tunesmith.data.chat_encoding import IGNORE
from tunesmith.methods.prompt_learning import virtual_tokens
from tunesmith.models.compute_copy import frozen_linear
from tunesmith.tasks.linear_cross_entropy import summed_cross_entropy, summed_token_cross_entropy


def answer_logits(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions whose next token is a target, and those targets.

    The vocabulary projection is the largest matrix of a small LM (a fifth of SmolLM2-135M) and its output the
    largest activation, so only the hidden states that predict a target go through it: the decoder stack
    runs as usual, the hidden states are gathered, then the output layer. Models whose causal-LM head does
    more than a plain projection (logit soft-capping or scaling) or that a wrapper must drive (prompt
    learning) go through their own forward instead, keeping only the columns some row needs.
    """
    split = backbone_and_head(model)
    if split is not None:
        hidden, targets = _answer_hidden(split[0], batch)
        return frozen_linear(split[1], hidden), targets
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    keep = (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(-1)
    # prompt tuning puts its virtual tokens in front: the kept positions move right by as many
    logits = model(**inputs, use_cache=False, logits_to_keep=keep + virtual_tokens(model)).logits
    return logits, labels[:, keep + 1]


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """The summed cross-entropy of the answer tokens (the positions `answer_logits` keeps) and their count.
    With a backbone and a plain head, the head and the loss are one step (tasks/linear_cross_entropy.py)."""
    split = backbone_and_head(model)
    if split is not None:
        hidden, targets = _answer_hidden(split[0], batch)
        return summed_cross_entropy(hidden, split[1], targets), targets.numel()
    logits, targets = answer_logits(model, batch)
    return summed_token_cross_entropy(logits, targets, IGNORE)


def _answer_hidden(
    backbone: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's last hidden states at the positions whose next token is a target, and those targets."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = backbone(**inputs, use_cache=False).last_hidden_state
    wanted = labels[:, 1:] != IGNORE
    return hidden[:, :-1][wanted], labels[:, 1:][wanted]


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    peft_config = getattr(model, "peft_config", None)
    if peft_config and any(c.is_prompt_learning for c in peft_config.values()):
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if any(
        getattr(config, k, None) not in (None, 1, 1.0)
        for k in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    ):
        return None
    backbone = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if backbone is None or head is None or backbone is base:
        return None
    return backbone, head
