"""The paired bootstrap interval of tuned - base: right metrics on each resample, and intervals that bracket
the true difference about as often as they claim to."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.evaluation.bootstrap import (
    classification_resampler,
    mean_resampler,
    paired_intervals,
    share_better,
)
from tunesmith.evaluation.metrics import classification_metrics


def test_classification_resampler_matches_scikit_learn_on_every_resample():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 60)
    predicted = np.where(rng.random(60) < 0.6, truth, rng.integers(0, 3, 60))  # class 3 is never predicted
    resample = classification_resampler(truth.tolist(), predicted.tolist(), 4)
    indices = rng.integers(0, 60, size=(5, 60))
    got = resample(indices)
    for r, idx in enumerate(indices):
        want = classification_metrics(truth[idx].tolist(), predicted[idx].tolist(), ["a", "b", "c", "d"])
        for name in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"):
            assert got[name][r] == pytest.approx(want[name]), name


def population(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two classifiers' predictions; the tuned one is right more often, and both tend to fail on
    the same hard examples (the pairing the bootstrap must respect)."""
    truth = rng.integers(0, 3, size)
    hard = rng.random(size) < 0.3
    wrong = (truth + rng.integers(1, 3, size)) % 3
    base = np.where(hard | (rng.random(size) < 0.15), wrong, truth)
    tuned = np.where(hard & (rng.random(size) < 0.7), wrong, truth)
    return truth, base, tuned


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_intervals_bracket_the_true_difference_about_95_percent_of_the_time(metric):
    rng = np.random.default_rng(1)
    truth, base, tuned = population(200_000, rng)
    everything = np.arange(len(truth))[None, :]
    true_difference = (
        classification_resampler(truth, tuned, 3)(everything)[metric][0]
        - classification_resampler(truth, base, 3)(everything)[metric][0]
    )
    assert true_difference > 0.05
    trials, hits = 200, 0
    for trial in range(trials):
        sample = rng.choice(len(truth), 300, replace=False)
        t = classification_resampler(truth[sample], tuned[sample], 3)
        b = classification_resampler(truth[sample], base[sample], 3)
        interval = paired_intervals(t, b, 300, resamples=500, seed=trial)[metric]
        assert interval.low <= interval.delta <= interval.high
        hits += interval.low <= true_difference <= interval.high
    assert 0.88 <= hits / trials <= 0.99


def test_no_difference_gives_an_interval_around_zero_and_a_real_gain_excludes_it():
    rng = np.random.default_rng(2)
    scores = rng.random(200)
    same = paired_intervals(mean_resampler({"f1": scores}), mean_resampler({"f1": scores}), 200)["f1"]
    assert same.delta == same.low == same.high == 0 and not same.excludes_zero

    noisy = scores + rng.normal(0, 0.2, 200)  # as good on average, different on each example
    even = paired_intervals(mean_resampler({"f1": noisy}), mean_resampler({"f1": scores}), 200)["f1"]
    assert even.low < 0 < even.high and not even.excludes_zero

    better = paired_intervals(mean_resampler({"f1": scores + 0.1}), mean_resampler({"f1": scores}), 200)["f1"]
    assert better.low == pytest.approx(0.1) and better.excludes_zero


def test_too_few_examples_give_no_interval():
    one = mean_resampler({"f1": [1.0]})
    assert paired_intervals(one, one, 1) == {}


def test_share_better_counts_the_resamples_a_candidate_wins_and_splits_ties():
    truth = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0] * 3
    right = classification_resampler(truth, truth, 3)
    one_wrong = classification_resampler(truth, [1] + truth[1:], 3)
    assert share_better(right, right, len(truth), "macro_f1") == 0.5  # every resample a tie
    # the candidate is never worse, and ahead wherever the one error is drawn (1 - (29/30)^30 of resamples)
    share = share_better(right, one_wrong, len(truth), "macro_f1", resamples=4000)
    assert share == pytest.approx(1 - 0.5 * (29 / 30) ** 30, abs=0.02)
    assert share_better(one_wrong, right, len(truth), "macro_f1", resamples=4000) == pytest.approx(
        1 - share, abs=1e-9
    )
    # lower is better: the roles swap
    assert share_better(
        one_wrong, right, len(truth), "macro_f1", greater_is_better=False, resamples=4000
    ) == (pytest.approx(share, abs=1e-9))
    assert share_better(right, one_wrong, len(truth), "loss") is None  # not a resampled metric
