"""Each preference loss against its paper's formula, computed here by hand with `math` on two examples."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from tunesmith.errors import ConfigError
from tunesmith.tasks.preference import LOSSES, Scores


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# two pairs: summed answer log-probabilities, token counts, and the reference's log-probabilities
CHOSEN, CHOSEN_TOKENS, REF_CHOSEN = (-10.0, -20.0), (5, 10), (-11.0, -19.0)
REJECTED, REJECTED_TOKENS, REF_REJECTED = (-12.0, -18.0), (4, 6), (-11.0, -19.0)


def scores(**extra) -> Scores:
    return Scores(
        chosen=t(*CHOSEN).requires_grad_(),
        chosen_tokens=t(*CHOSEN_TOKENS),
        rejected=t(*REJECTED).requires_grad_(),
        rejected_tokens=t(*REJECTED_TOKENS),
        reference_chosen=t(*REF_CHOSEN),
        reference_rejected=t(*REF_REJECTED),
        **extra,
    )


def loss_of(name: str, given: Scores | None = None, **params):
    cls = LOSSES.get(name)
    return cls(cls.Params(**params))(given or scores())


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_dpo_is_minus_log_sigmoid_of_beta_times_the_log_ratio_difference(smoothing):
    beta, want, rewards = 0.1, [], []
    for c, r, rc, rr in zip(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, strict=True):
        h = beta * ((c - rc) - (r - rr))
        want.append(-(1 - smoothing) * log_sigmoid(h) - smoothing * log_sigmoid(-h))
        rewards.append((beta * (c - rc), beta * (r - rr)))
    out = loss_of("dpo", beta=beta, label_smoothing=smoothing)
    assert float(out.loss.detach()) == pytest.approx(sum(want) / 2, abs=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([a for a, _ in rewards])
    assert out.rejected_rewards.tolist() == pytest.approx([b for _, b in rewards])
    out.loss.backward()  # differentiable in the tuned model's log-probabilities, rewards are not
    assert not out.chosen_rewards.requires_grad


def test_ipo_regresses_the_mean_log_ratio_difference_onto_one_over_two_beta():
    beta, want = 0.1, []
    pairs = zip(CHOSEN, CHOSEN_TOKENS, REJECTED, REJECTED_TOKENS, REF_CHOSEN, REF_REJECTED, strict=True)
    for c, nc, r, nr, rc, rr in pairs:
        h = (c / nc - rc / nc) - (r / nr - rr / nr)
        want.append((h - 1 / (2 * beta)) ** 2)
    assert float(loss_of("ipo", beta=beta).loss.detach()) == pytest.approx(sum(want) / 2, abs=1e-12)


@pytest.mark.parametrize("with_mismatched", [False, True])
def test_kto_compares_each_answer_with_the_clamped_kl_reference_point(with_mismatched):
    beta, good_weight, bad_weight = 0.1, 1.33, 1.0
    extra = {"desirable": torch.tensor([True, False])}
    if with_mismatched:
        extra |= {"mismatched": t(-15.0, -15.0), "reference_mismatched": t(-16.0, -17.0)}
        kl = max(0.0, ((-15 + 16) + (-15 + 17)) / 2)
    else:
        kl = max(0.0, ((CHOSEN[0] - REF_CHOSEN[0]) + (CHOSEN[1] - REF_CHOSEN[1])) / 2)
    ratio = [c - rc for c, rc in zip(CHOSEN, REF_CHOSEN, strict=True)]
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = [
        good_weight * (1 - sigmoid(beta * (ratio[0] - kl))),
        bad_weight * (1 - sigmoid(beta * (kl - ratio[1]))),
    ]
    cls = LOSSES.get("kto")
    out = cls(cls.Params(beta=beta, desirable_weight=good_weight))(scores(**extra))
    assert float(out.loss.detach()) == pytest.approx(sum(want) / 2, abs=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * x for x in ratio])
    assert not cls.paired and out.rejected_rewards is None


def test_orpo_adds_the_log_odds_ratio_term_to_the_chosen_answers_language_model_loss():
    beta, want = 0.1, []
    for c, nc, r, nr in zip(CHOSEN, CHOSEN_TOKENS, REJECTED, REJECTED_TOKENS, strict=True):
        mc, mr = c / nc, r / nr
        odds = (mc - math.log(1 - math.exp(mc))) - (mr - math.log(1 - math.exp(mr)))
        want.append(-mc - beta * log_sigmoid(odds))
    out = loss_of("orpo", beta=beta)
    assert float(out.loss.detach()) == pytest.approx(sum(want) / 2, abs=1e-12)
    assert not LOSSES.get("orpo").needs_reference
    near_certain = Scores(chosen=t(-1e-9), chosen_tokens=t(3), rejected=t(-5.0), rejected_tokens=t(5))
    assert math.isfinite(float(loss_of("orpo", near_certain).loss.detach()))  # p near 1: odds stay finite


def test_simpo_scales_mean_log_likelihoods_and_asks_a_margin_of_gamma():
    beta, ratio, want = 2.0, 0.5, []
    for c, nc, r, nr in zip(CHOSEN, CHOSEN_TOKENS, REJECTED, REJECTED_TOKENS, strict=True):
        want.append(-log_sigmoid(beta * c / nc - beta * r / nr - ratio * beta))
    out = loss_of("simpo", beta=beta, gamma_beta_ratio=ratio)
    assert float(out.loss.detach()) == pytest.approx(sum(want) / 2, abs=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx(
        [beta * c / n for c, n in zip(CHOSEN, CHOSEN_TOKENS, strict=True)]
    )
    assert not LOSSES.get("simpo").needs_reference


def test_losses_are_registered_by_name_with_their_own_typed_keys():
    assert LOSSES.names() == ["dpo", "ipo", "kto", "orpo", "simpo"]
    with pytest.raises(
        ConfigError, match="unknown preference loss 'rlhf'; valid preference losses: dpo, ipo"
    ):
        LOSSES.get("rlhf")
    with pytest.raises(ValidationError):
        LOSSES.get("dpo").Params(gamma_beta_ratio=0.5)  # SimPO's key, not DPO's
    with pytest.raises(ValidationError):
        LOSSES.get("dpo").Params(beta=0)
