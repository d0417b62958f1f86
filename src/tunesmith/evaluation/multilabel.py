"""Multi-label classification: each text carries any number of labels (0/1 per label).

Metrics are scikit-learn's (zero_division=0, as for single-label classification), over an examples x labels
0/1 matrix:
- micro F1: every (example, label) decision pooled, so common labels weigh more;
- macro F1: the mean of the labels' own F1 (a rare label counts as much as a common one);
- samples F1: the mean over examples of each example's F1 between its true and predicted label sets (an
  example with no true and no predicted label scores 1: it was answered right);
- subset accuracy: examples whose predicted set is exactly the true set;
- Hamming loss: the share of (example, label) decisions that are wrong (lower is better);
and per label precision, recall, F1 and support, and the labels the examples have that are never predicted.

A label is predicted when its sigmoid probability reaches its threshold; `tune_thresholds` picks each label's
threshold on validation (the one of THRESHOLDS that maximises that label's F1, the one nearest 0.5 among
equals; 0.5 for a label validation never has). The paired bootstrap (evaluation/bootstrap.py) recomputes
every metric from each resample's per-label counts (`multilabel_resampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunesmith.evaluation.bootstrap import Resampler

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
"""Candidate thresholds a label's is chosen from: a coarse grid, so a small validation split does not fit
its threshold to one example's probability."""
DEFAULT_THRESHOLD = 0.5

MULTILABEL_HEADLINE = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
"""The metrics printed in tables; the JSON output carries everything."""


def multilabel_metrics(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The metrics above, from examples x labels 0/1 matrices of truth and prediction."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    out: dict[str, Any] = {"examples": int(truth.shape[0])}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(truth, predicted, average=average, zero_division=0)
        out[f"{average}_precision"], out[f"{average}_recall"], out[f"{average}_f1"] = (
            float(p),
            float(r),
            float(f),
        )
    out["samples_f1"] = float(f1_score(truth, predicted, average="samples", zero_division=1))
    out["subset_accuracy"] = float(accuracy_score(truth, predicted))
    out["hamming_loss"] = float(hamming_loss(truth, predicted))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    out["per_label"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    never = (truth.sum(axis=0) > 0) & (predicted.sum(axis=0) == 0)
    out["never_predicted"] = [name for i, name in enumerate(labels) if never[i]]
    return out


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each label's threshold (examples x labels probabilities and 0/1 truth): the THRESHOLDS value with the
    best F1 for that label, nearest DEFAULT_THRESHOLD among equals; DEFAULT_THRESHOLD where truth has none of
    the label."""
    probabilities, truth = np.asarray(probabilities, dtype=np.float64), np.asarray(truth, dtype=bool)
    predicted = probabilities[None, :, :] >= THRESHOLDS[:, None, None]  # thresholds x examples x labels
    tp = (predicted & truth[None]).sum(axis=1)
    fp = (predicted & ~truth[None]).sum(axis=1)
    fn = (~predicted & truth[None]).sum(axis=1)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(tp.shape), where=(2 * tp + fp + fn) > 0)
    # best F1, then nearest the default: sort candidates by distance to it and take the first maximum
    by_distance = np.argsort(np.abs(THRESHOLDS - DEFAULT_THRESHOLD), kind="stable")
    best = by_distance[np.argmax(f1[by_distance], axis=0)]
    chosen = THRESHOLDS[best]
    return np.where(truth.any(axis=0), chosen, DEFAULT_THRESHOLD)


def decide(probabilities: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Examples x labels 0/1: each label predicted where its probability reaches its threshold."""
    return (np.asarray(probabilities) >= np.asarray(thresholds)[None, :]).astype(int)


def multilabel_resampler(truth: np.ndarray, predicted: np.ndarray) -> Resampler:
    """micro/macro F1, samples F1, subset accuracy and Hamming loss of each resample, recomputed from its
    per-label counts (each resample is a count per example: resamples x examples times examples x labels)."""
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    n, labels = truth.shape
    tp = (truth & predicted).astype(np.float64)
    fp = (~truth & predicted).astype(np.float64)
    fn = (truth & ~predicted).astype(np.float64)
    ex_tp, ex_wrong = tp.sum(axis=1), (fp + fn).sum(axis=1)
    example_f1 = np.divide(2 * ex_tp, 2 * ex_tp + ex_wrong, out=np.ones(n), where=(2 * ex_tp + ex_wrong) > 0)
    exact = (ex_wrong == 0).astype(np.float64)

    def resample(indices: np.ndarray) -> dict[str, np.ndarray]:
        draws = indices.shape[0]
        counts = np.zeros((draws, n))
        np.add.at(counts, (np.arange(draws)[:, None], indices), 1.0)
        label_tp, label_fp, label_fn = counts @ tp, counts @ fp, counts @ fn  # draws x labels
        denominator = 2 * label_tp + label_fp + label_fn
        label_f1 = np.divide(2 * label_tp, denominator, out=np.zeros_like(label_tp), where=denominator > 0)
        pooled = denominator.sum(axis=1)
        micro = np.divide(2 * label_tp.sum(axis=1), pooled, out=np.zeros(draws), where=pooled > 0)
        return {
            "micro_f1": micro,
            "macro_f1": label_f1.mean(axis=1),
            "samples_f1": counts @ example_f1 / n,
            "subset_accuracy": counts @ exact / n,
            "hamming_loss": (label_fp + label_fn).sum(axis=1) / (n * labels),
        }

    return resample
