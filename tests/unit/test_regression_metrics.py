"""Regression metrics against scikit-learn's and scipy's own, and their bootstrap recomputed per resample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.evaluation.regression import regression_metrics, regression_resampler, residual_bins

TRUTH = [2.5, -1.0, 0.0, 3.25, -2.0, 1.0, 1.0, 0.5]
PREDICTED = [2.0, -0.5, 0.25, 2.5, -2.5, 1.5, 0.5, 0.5]


def test_metrics_are_scikit_learn_and_scipy_definitions() -> None:
    m = regression_metrics(PREDICTED, TRUTH)
    assert m["mse"] == pytest.approx(mean_squared_error(TRUTH, PREDICTED))
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(TRUTH, PREDICTED)))
    assert m["mae"] == pytest.approx(mean_absolute_error(TRUTH, PREDICTED))
    assert m["r2"] == pytest.approx(r2_score(TRUTH, PREDICTED))
    assert m["pearson"] == pytest.approx(pearsonr(PREDICTED, TRUTH).statistic)
    assert m["spearman"] == pytest.approx(spearmanr(PREDICTED, TRUTH).statistic)
    assert m["examples"] == 8


def test_a_constant_prediction_has_no_correlation_and_the_mean_scores_r2_zero() -> None:
    mean = float(np.mean(TRUTH))
    m = regression_metrics([mean] * len(TRUTH), TRUTH)
    assert m["pearson"] == m["spearman"] == 0.0 and m["r2"] == pytest.approx(0.0, abs=1e-12)


def test_each_resample_is_scored_as_the_metrics_score_it() -> None:
    rng = np.random.default_rng(3)
    truth, predicted = rng.normal(size=60), rng.normal(size=60)
    predicted = 0.6 * truth + 0.4 * predicted
    indices = rng.integers(0, 60, size=(5, 60))
    resampled = regression_resampler(predicted, truth)(indices)
    for row, idx in enumerate(indices):
        expected = regression_metrics(predicted[idx], truth[idx])
        for name in ("mse", "rmse", "mae", "r2", "pearson", "spearman"):
            assert resampled[name][row] == pytest.approx(expected[name], abs=1e-9), name


def test_errors_are_lower_is_better_and_correlations_higher() -> None:
    assert not any(greater_is_better(m) for m in ("mse", "rmse", "mae", "loss"))
    assert all(greater_is_better(m) for m in ("r2", "pearson", "spearman"))


def test_residual_bins_split_by_the_true_value() -> None:
    bins = residual_bins(PREDICTED, TRUTH, bins=4)
    assert [b["examples"] for b in bins] == [2, 2, 2, 2]
    assert bins[0]["low"] == -2.0 and bins[-1]["high"] == 3.25
    assert bins[0]["mae"] == pytest.approx(0.5)  # truths -2 and -1, predicted -2.5 and -0.5
