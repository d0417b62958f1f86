"""Identity Preference Optimization (Azar et al., 2023): DPO's log-ratio difference regressed onto 1/(2 beta)
with a squared loss, so a pair the model already separates is not pushed further (DPO's sigmoid never stops).
Log-probabilities are per-token means, as TRL's IPO takes them."""

from __future__ import annotations

from pydantic import Field

from tunesmith.tasks.preference.loss import LOSSES, Outcome, PreferenceLoss, Scores


@LOSSES.register("ipo")
class IPO(PreferenceLoss):
    name = "ipo"

    class Params(PreferenceLoss.Params):
        beta: float = Field(0.1, gt=0)
        """The regularisation strength tau of the paper: the target margin is 1 / (2 beta). 0.1: TRL's
        default; not yet measured on tunesmith's own preference data."""

    def __call__(self, scores: Scores) -> Outcome:
        chosen = scores.mean("chosen") - scores.mean("chosen", reference=True)
        rejected = scores.mean("rejected") - scores.mean("rejected", reference=True)
        losses = (chosen - rejected - 1 / (2 * self.params.beta)) ** 2
        beta = self.params.beta
        return Outcome(losses.mean(), beta * chosen.detach(), beta * rejected.detach())
