"""Simple Preference Optimization (Meng et al., 2024): no reference model. The reward of an answer is beta
times its per-token mean log-likelihood (so longer answers gain nothing by length); the chosen answer's reward
must beat the rejected one's by a margin gamma, through -log sigmoid."""

from __future__ import annotations

from pydantic import Field

from tunesmith.tasks.preference.loss import LOSSES, Outcome, PreferenceLoss, Scores, smoothed_sigmoid_loss


@LOSSES.register("simpo")
class SimPO(PreferenceLoss):
    name = "simpo"
    needs_reference = False

    class Params(PreferenceLoss.Params):
        beta: float = Field(2.0, gt=0)
        """Reward scale. 2.0: the paper's setting for its base models (it sweeps 2.0 to 2.5); TRL's CPO
        trainer defaults to 0.1 for all its losses. Not yet measured here."""
        gamma_beta_ratio: float = Field(0.5, ge=0)
        """The target margin gamma as a multiple of beta (the paper's gamma / beta, 0.5 in its setting)."""
        label_smoothing: float = Field(0.0, ge=0, lt=0.5)

    def __call__(self, scores: Scores) -> Outcome:
        p = self.params
        chosen, rejected = p.beta * scores.mean("chosen"), p.beta * scores.mean("rejected")
        losses = smoothed_sigmoid_loss(chosen - rejected - p.gamma_beta_ratio * p.beta, p.label_smoothing)
        return Outcome(losses.mean(), chosen.detach(), rejected.detach())
