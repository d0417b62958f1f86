"""Regression: one number a text (a risk score, a rating). Metrics in the target's own units:
- MSE, RMSE and MAE (lower is better);
- R² (scikit-learn's r2_score: 1 - residual sum of squares / total sum of squares; 0 for predicting the mean);
- Pearson's and Spearman's correlation of prediction and truth (evaluation/correlation.py).
The paired bootstrap (evaluation/bootstrap.py) recomputes each from the resample (`regression_resampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunesmith.evaluation.bootstrap import Resampler
from tunesmith.evaluation.correlation import correlation_resampler, correlations

REGRESSION_HEADLINE = ("rmse", "mae", "r2", "pearson", "spearman")
"""The metrics printed in tables; the JSON output carries everything."""


def regression_metrics(predicted: Sequence[float], truth: Sequence[float]) -> dict[str, Any]:
    """The metrics above, plus the examples' count and the mean of truth and prediction."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    mse = float(mean_squared_error(y, x))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(y, x)),
        "r2": float(r2_score(y, x)) if len(y) > 1 and np.ptp(y) > 0 else 0.0,
        **correlations(x, y),
        "examples": len(y),
        "mean_truth": float(y.mean()) if len(y) else 0.0,
        "mean_predicted": float(x.mean()) if len(x) else 0.0,
    }


def regression_resampler(predicted: Sequence[float], truth: Sequence[float]) -> Resampler:
    """MSE, RMSE, MAE, R², Pearson and Spearman on each resample of the examples."""
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    correlated = correlation_resampler(x, y)

    def resample(indices: np.ndarray) -> dict[str, np.ndarray]:
        residual, ys = x[indices] - y[indices], y[indices]
        mse = (residual**2).mean(axis=1)
        spread = ((ys - ys.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)
        r2 = np.divide(spread - mse, spread, out=np.zeros_like(mse), where=spread > 0)
        return {
            "mse": mse,
            "rmse": np.sqrt(mse),
            "mae": np.abs(residual).mean(axis=1),
            "r2": r2,
            **correlated(indices),
        }

    return resample


def residual_bins(
    predicted: Sequence[float], truth: Sequence[float], bins: int = 10
) -> list[dict[str, float]]:
    """The examples cut into `bins` equal-count bins of the true value: each bin's range, mean truth, mean
    prediction and mean absolute error (the report's residual table: where the model is off)."""
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    order = np.argsort(y, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))):
        if not len(part):
            continue
        out.append(
            {
                "low": float(y[part].min()),
                "high": float(y[part].max()),
                "examples": len(part),
                "mean_truth": float(y[part].mean()),
                "mean_predicted": float(x[part].mean()),
                "mae": float(np.abs(x[part] - y[part]).mean()),
            }
        )
    return out
