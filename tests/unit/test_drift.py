"""Drift detectors on samples whose truth is known: the same distribution must not alert, a shifted one must."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.errors import UserError
from tunesmith.monitoring import drift
from tunesmith.monitoring.monitor import parse_since


def samples(shift: float, n: int = 200, dims: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(n, dims))
    recent = rng.normal(size=(n, dims))
    recent[:, :4] += shift
    return reference, recent


def test_domain_classifier_cannot_tell_the_same_distribution_apart():
    result, unfamiliar = drift.domain_classifier(*samples(0.0), threshold=0.75)
    assert 0.35 < result.score < 0.62 and not result.alert
    assert unfamiliar.shape == (200,)


def test_domain_classifier_finds_a_shift_and_ranks_the_shifted_rows_first():
    reference, recent = samples(1.0)
    recent[:100, :4] -= 1.0  # only the second half is shifted
    result, unfamiliar = drift.domain_classifier(reference, recent, threshold=0.6)
    assert result.score > 0.6 and result.alert
    top = np.argsort(-unfamiliar)[:50]
    assert (top >= 100).mean() > 0.8


def test_mmd_permutation_p_value_is_large_without_and_small_with_a_shift():
    same = drift.mmd(*samples(0.0, n=100), p_threshold=0.01, permutations=100)
    moved = drift.mmd(*samples(0.7, n=100), p_threshold=0.01, permutations=100)
    assert same.detail["p_value"] > 0.05 and not same.alert
    assert moved.detail["p_value"] < 0.01 and moved.alert
    assert moved.score > same.score


def test_length_and_unseen_words():
    rng = np.random.default_rng(1)
    assert not drift.length_shift(rng.poisson(20, 300), rng.poisson(20, 300), 0.01).alert
    assert drift.length_shift(rng.poisson(20, 300), rng.poisson(35, 300), 0.01).alert
    known = drift.vocabulary(["the cat sat on the mat", "a dog ran"])
    assert drift.oov_rate(["the cat ran"], known) == 0
    assert drift.oov_rate(["the zebra grazed"], known) == pytest.approx(2 / 3)
    assert drift.oov_shift(0.05, 0.40, 0.1).alert and not drift.oov_shift(0.05, 0.08, 0.1).alert


def test_prediction_psi_and_confidence_drop():
    names = ["a", "b", "c"]
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    same = drift.prediction_shift(reference, ["a"] * 48 + ["b"] * 32 + ["c"] * 20, names, 0.2)
    moved = drift.prediction_shift(reference, ["c"] * 80 + ["a"] * 20, names, 0.2)
    assert same.score < 0.01 and not same.alert and same.detail["chi2_p_value"] > 0.5
    assert moved.score > 0.5 and moved.alert and moved.detail["chi2_p_value"] < 1e-6
    assert drift.confidence_drop([0.9] * 10, [0.6] * 10, 0.1).alert
    assert not drift.confidence_drop([0.9] * 10, [0.88] * 10, 0.1).alert


def test_since_takes_spans_and_dates():
    assert parse_since("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_since(None) is None
    assert parse_since("2026-11-01T00:00:00+00:00") == 1793491200.0
    with pytest.raises(UserError, match="give a span"):
        parse_since("last tuesday")
