"""Odds Ratio Preference Optimization (Hong et al., 2024): no reference model. The chosen answer's usual
language-model loss plus lambda times -log sigmoid of the log odds ratio of chosen to rejected, the odds of an
answer being p / (1 - p) with p its per-token mean likelihood."""

from __future__ import annotations

import torch
from pydantic import Field
from torch.nn import functional as F

from tunesmith.tasks.preference.loss import LOSSES, Outcome, PreferenceLoss, Scores


def log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) from log p < 0, without forming 1 - p where p is near 1."""
    return mean_logp - torch.log(-torch.expm1(mean_logp))


@LOSSES.register("orpo")
class ORPO(PreferenceLoss):
    name = "orpo"
    needs_reference = False

    class Params(PreferenceLoss.Params):
        beta: float = Field(0.1, gt=0)
        """The paper's lambda, the weight of the odds-ratio term against the chosen answer's language-model
        loss. 0.1: the paper's and TRL's default; not yet measured here."""

    def __call__(self, scores: Scores) -> Outcome:
        chosen, rejected = scores.mean("chosen"), scores.mean("rejected")
        ratio = F.logsigmoid(log_odds(chosen) - log_odds(rejected))
        losses = -chosen - self.params.beta * ratio
        beta = self.params.beta
        return Outcome(losses.mean(), beta * chosen.detach(), beta * rejected.detach())
