"""Kahneman-Tversky Optimization (Ethayarajh et al., 2024): single answers labelled desirable or undesirable
(a thumbs up or down), no pairs. Each answer's log-ratio to the reference is compared with a reference point,
the model's KL divergence from the reference estimated on mismatched prompt/answer pairs (clamped at zero and
not differentiated); desirable answers gain from rising above it, undesirable ones from falling below."""

from __future__ import annotations

import torch
from pydantic import Field

from tunesmith.tasks.preference.loss import LOSSES, Outcome, PreferenceLoss, Scores


@LOSSES.register("kto")
class KTO(PreferenceLoss):
    name = "kto"
    paired = False

    class Params(PreferenceLoss.Params):
        beta: float = Field(0.1, gt=0)
        """As DPO's beta. 0.1: the paper's and TRL's default; not yet measured here."""
        desirable_weight: float = Field(1.0, gt=0)
        """Weight of desirable answers' losses; the paper advises weights so that desirable x count over
        undesirable x count lies in [1, 4/3] when the two kinds are unbalanced."""
        undesirable_weight: float = Field(1.0, gt=0)

    def __call__(self, scores: Scores) -> Outcome:
        p = self.params
        ratio = scores.chosen - scores.reference_chosen
        own = scores.mismatched is None  # no mismatched pairs: the batch's own answers estimate the KL
        shift = ratio if own else scores.mismatched - scores.reference_mismatched
        kl = shift.mean().clamp(min=0).detach()
        good = scores.desirable.bool()
        losses = torch.where(
            good,
            p.desirable_weight * (1 - torch.sigmoid(p.beta * (ratio - kl))),
            p.undesirable_weight * (1 - torch.sigmoid(p.beta * (kl - ratio))),
        )
        return Outcome(losses.mean(), p.beta * ratio.detach())
