"""Direct Preference Optimization (Rafailov et al., 2023), the sigmoid loss: the log-ratio of the chosen
answer's likelihood to the reference's, minus the rejected answer's, scaled by beta, through -log sigmoid."""

from __future__ import annotations

from pydantic import Field

from tunesmith.tasks.preference.loss import LOSSES, Outcome, PreferenceLoss, Scores, smoothed_sigmoid_loss


@LOSSES.register("dpo")
class DPO(PreferenceLoss):
    name = "dpo"

    class Params(PreferenceLoss.Params):
        beta: float = Field(0.1, gt=0)
        """How far the tuned model may move from the reference (smaller: further). 0.1: the paper's and TRL's
        default; not yet measured on tunesmith's own preference data."""
        label_smoothing: float = Field(0.0, ge=0, lt=0.5)
        """Share of pairs assumed mislabelled (conservative DPO); 0: the labels are trusted."""

    def __call__(self, scores: Scores) -> Outcome:
        beta = self.params.beta
        chosen = beta * (scores.chosen - scores.reference_chosen)
        rejected = beta * (scores.rejected - scores.reference_rejected)
        losses = smoothed_sigmoid_loss(chosen - rejected, self.params.label_smoothing)
        return Outcome(losses.mean(), chosen.detach(), rejected.detach())
