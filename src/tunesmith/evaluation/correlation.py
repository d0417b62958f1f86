"""How well predicted similarities follow labelled scores: Spearman's rank correlation (the headline, as
sentence-transformers' EmbeddingSimilarityEvaluator reports it) and Pearson's linear one. Neither is a mean
of per-example scores, so the bootstrap recomputes them on each resample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, rankdata, spearmanr

from tunesmith.evaluation.bootstrap import Resampler


def correlations(predicted: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    """{"spearman", "pearson"}; 0 where either side is constant (no order to follow)."""
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"spearman": 0.0, "pearson": 0.0}
    return {"spearman": float(spearmanr(x, y).statistic), "pearson": float(pearsonr(x, y).statistic)}


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's correlation of each row of `x` with the same row of `y` (0 for a constant row)."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    return np.divide((x * y).sum(axis=1), denominator, out=np.zeros(len(x)), where=denominator > 0)


def correlation_resampler(predicted: Sequence[float], truth: Sequence[float]) -> Resampler:
    """Spearman and Pearson on each resample (Spearman: Pearson of the resample's ranks, ties averaged)."""
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)

    def resample(indices: np.ndarray) -> dict[str, np.ndarray]:
        xs, ys = x[indices], y[indices]
        ranked = _pearson_rows(rankdata(xs, axis=1), rankdata(ys, axis=1))
        return {"spearman": ranked, "pearson": _pearson_rows(xs, ys)}

    return resample
