"""What a preference loss is given and gives back, and the registry of losses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn import functional as F

from tunesmith.plugin import Section
from tunesmith.registry import Registry


@dataclass
class Scores:
    """Per-example log-probabilities of answer tokens (only the answer's tokens count, summed), under the model
    being tuned and under the reference (the untouched model), with each answer's token count for the losses
    that average per token. Paired losses read chosen and rejected; KTO reads `chosen` as its one completion
    with `desirable` saying which kind it is."""

    chosen: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected: torch.Tensor | None = None
    rejected_tokens: torch.Tensor | None = None
    reference_chosen: torch.Tensor | None = None
    reference_rejected: torch.Tensor | None = None
    desirable: torch.Tensor | None = None
    """KTO: True for a desirable completion (thumbs up), False for an undesirable one."""
    mismatched: torch.Tensor | None = None
    """KTO: log-probabilities of completions paired with other examples' prompts, under the model being tuned;
    with `reference_mismatched`, the estimate of the KL term (KTO's reference point). None: the batch's own
    completions estimate it."""
    reference_mismatched: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    """Validation only: each row's summed KL(model || reference) over its answer tokens' next-token
    distributions (paired: every chosen row, then every rejected row)."""

    def mean(self, side: str, reference: bool = False) -> torch.Tensor:
        """The per-token mean log-probability of one side ("chosen" or "rejected")."""
        summed = getattr(self, f"reference_{side}" if reference else side)
        return summed / getattr(self, f"{side}_tokens").clamp(min=1)


@dataclass
class Outcome:
    loss: torch.Tensor
    """The mean over the batch's examples (a scalar to call backward on)."""
    chosen_rewards: torch.Tensor
    """Each example's implicit reward for its chosen answer (KTO: for its completion), detached."""
    rejected_rewards: torch.Tensor | None = None


class PreferenceLoss:
    """One objective. Its Params are its own typed keys (task.loss_params in a config); `needs_reference`
    says whether the reference model's log-probabilities must be computed (ORPO and SimPO need none)."""

    name: ClassVar[str]
    needs_reference: ClassVar[bool] = True
    paired: ClassVar[bool] = True
    """False for losses that score single completions labelled desirable or not (KTO)."""

    class Params(Section):
        pass

    def __init__(self, params: Section | None = None):
        self.params = params if params is not None else self.Params()

    def __call__(self, scores: Scores) -> Outcome:
        raise NotImplementedError


LOSSES: Registry[type[PreferenceLoss]] = Registry("preference loss")


def smoothed_sigmoid_loss(logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    """-log sigmoid(logits), with a share `smoothing` of the labels taken as flipped (conservative DPO,
    Mitchell 2023: the preference labels are noisy)."""
    return -(1 - smoothing) * F.logsigmoid(logits) - smoothing * F.logsigmoid(-logits)
