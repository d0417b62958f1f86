"""Is a gain real? The paired bootstrap: resample the test examples with replacement, score the tuned and the
base model on the same resample, and read the 95% interval of the difference from the percentiles of many
such resamples (Efron & Tibshirani 1993; Koehn 2004 for MT metrics). Pairing matters: both models answer the
same examples, so the example-to-example spread that both share cancels out.

Metrics that are means of per-example scores (accuracy, ROUGE, exact match, token F1) are resampled as such;
metrics over the whole confusion matrix (macro and weighted precision/recall/F1) are recomputed from each
resample's confusion matrix. Corpus-level metrics (BLEU, chrF) and token-level ones (loss, perplexity) get
no interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Resampler = Callable[[np.ndarray], dict[str, np.ndarray]]
"""(resamples × examples) index array -> metric name -> one value per resample."""

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    delta: float
    """tuned - base on the test set itself."""
    low: float
    high: float
    level: float = LEVEL

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def mean_resampler(scores: Mapping[str, Sequence[float]]) -> Resampler:
    """For metrics that are the mean of a per-example score."""
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}

    def resample(indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[indices].mean(axis=1) for name, values in arrays.items()}

    return resample


def classification_resampler(truth: Sequence[int], predicted: Sequence[int], classes: int) -> Resampler:
    """Accuracy and macro/weighted precision, recall and F1 (scikit-learn's definitions, zero_division=0) from
    each resample's confusion matrix, all resamples at once."""
    cells = np.asarray(truth, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)

    def resample(indices: np.ndarray) -> dict[str, np.ndarray]:
        count = indices.shape[0]
        offsets = np.arange(count)[:, None] * classes * classes
        flat = np.bincount((cells[indices] + offsets).ravel(), minlength=count * classes * classes)
        matrix = flat.reshape(count, classes, classes).astype(np.float64)  # [resample, truth, predicted]
        hits = np.diagonal(matrix, axis1=1, axis2=2)
        support, predicted_n = matrix.sum(axis=2), matrix.sum(axis=1)
        precision = np.divide(hits, predicted_n, out=np.zeros_like(hits), where=predicted_n > 0)
        recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
        total = support.sum(axis=1)
        weights = support / total[:, None]
        return {
            "accuracy": hits.sum(axis=1) / total,
            "macro_precision": precision.mean(axis=1),
            "macro_recall": recall.mean(axis=1),
            "macro_f1": f1.mean(axis=1),
            "weighted_f1": (f1 * weights).sum(axis=1),
        }

    return resample


def resampled_differences(
    first: Resampler, second: Resampler, examples: int, resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """first - second on the same `resamples` draws of the examples, for every metric both resamplers give."""
    indices = np.random.default_rng(seed).integers(0, examples, size=(resamples, examples))
    ours, theirs = first(indices), second(indices)
    return {name: ours[name] - theirs[name] for name in ours.keys() & theirs.keys()}


def paired_intervals(
    tuned: Resampler,
    base: Resampler,
    examples: int,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile intervals of tuned - base for every metric both resamplers give."""
    if examples < 2:
        return {}
    everything = np.arange(examples)[None, :]
    observed_tuned, observed_base = tuned(everything), base(everything)
    tail = 100 * (1 - level) / 2
    out = {}
    for name, differences in resampled_differences(tuned, base, examples, resamples, seed).items():
        low, high = np.percentile(differences, [tail, 100 - tail])
        delta = float(observed_tuned[name][0] - observed_base[name][0])
        out[name] = Interval(delta, float(low), float(high), level)
    return out


def share_better(
    candidate: Resampler,
    reference: Resampler,
    examples: int,
    metric: str,
    *,
    greater_is_better: bool = True,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> float | None:
    """The share of paired resamples in which `candidate` scores better than `reference` on `metric` (ties
    count half); None when the metric cannot be resampled."""
    if examples < 2:
        return None
    differences = resampled_differences(candidate, reference, examples, resamples, seed).get(metric)
    if differences is None:
        return None
    if not greater_is_better:
        differences = -differences
    return float(((differences > 0).sum() + 0.5 * (differences == 0).sum()) / resamples)
