"""Drift detectors: does recent traffic still look like the data the model was checked on?

Each detector compares a reference sample (held-out data) with a recent one and returns a score, its
threshold and whether it alerts:

- domain classifier: a logistic regression tries to tell recent from reference sentence embeddings
  (5-fold cross-validated); its ROC-AUC is 0.5 when it cannot, 1.0 when the two never overlap. The
  per-request probabilities it gives also rank the most unfamiliar requests (worth labelling).
- MMD: maximum mean discrepancy between the embeddings with a Gaussian kernel (median-distance bandwidth),
  and its p-value by permutation (Gretton et al. 2012).
- descriptors: text length in tokens (two-sample Kolmogorov-Smirnov) and the share of words never seen in
  the training data.
- predictions (classification): population stability index of the predicted label shares, with a chi-square
  test, and the drop of the mean top-label probability.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detection:
    score: float
    threshold: float
    alert: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _standardised(reference: np.ndarray, recent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.vstack([reference, recent]).astype(np.float64)
    both = (both - both.mean(0)) / (both.std(0) + 1e-8)
    return both[: len(reference)], both[len(reference) :]


def domain_classifier(
    reference: np.ndarray, recent: np.ndarray, threshold: float, seed: int = 0
) -> tuple[Detection, np.ndarray]:
    """ROC-AUC of telling recent from reference, and each recent row's out-of-fold P(recent)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    ref, rec = _standardised(reference, recent)
    features = np.vstack([ref, rec])
    target = np.r_[np.zeros(len(ref)), np.ones(len(rec))]
    folds = StratifiedKFold(n_splits=min(5, len(ref), len(rec)), shuffle=True, random_state=seed)
    classifier = LogisticRegression(C=0.1, max_iter=2000)
    probability = cross_val_predict(classifier, features, target, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(target, probability))
    detail = {"reference": len(ref), "recent": len(rec)}
    return Detection(auc, threshold, auc >= threshold, detail), probability[len(ref) :]


def mmd(
    reference: np.ndarray, recent: np.ndarray, p_threshold: float, permutations: int = 200, seed: int = 0
) -> Detection:
    """Unbiased MMD² with a Gaussian kernel; score = MMD², alert when the permutation p-value < threshold."""
    ref, rec = _standardised(reference, recent)
    both = np.vstack([ref, rec])
    squared = np.maximum((both**2).sum(1)[:, None] + (both**2).sum(1)[None, :] - 2 * both @ both.T, 0)
    off_diagonal = squared[~np.eye(len(both), dtype=bool)]
    bandwidth = float(np.median(off_diagonal)) or 1.0
    kernel = np.exp(-squared / bandwidth)
    n = len(ref)

    def statistic(order: np.ndarray) -> float:
        k = kernel[np.ix_(order, order)]
        xx, yy, xy = k[:n, :n], k[n:, n:], k[:n, n:]
        m = len(order) - n
        return float(
            (xx.sum() - np.trace(xx)) / (n * (n - 1))
            + (yy.sum() - np.trace(yy)) / (m * (m - 1))
            - 2 * xy.mean()
        )

    observed = statistic(np.arange(len(both)))
    rng = np.random.default_rng(seed)
    exceed = sum(statistic(rng.permutation(len(both))) >= observed for _ in range(permutations))
    p_value = (exceed + 1) / (permutations + 1)
    detail = {"p_value": p_value, "permutations": permutations, "bandwidth": bandwidth}
    return Detection(observed, p_threshold, p_value < p_threshold, detail)


def length_shift(reference: Sequence[int], recent: Sequence[int], p_threshold: float) -> Detection:
    """KS statistic of token lengths; alert when its p-value < threshold."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(reference), np.asarray(recent))
    detail = {
        "p_value": float(result.pvalue),
        "reference_median": float(np.median(reference)),
        "recent_median": float(np.median(recent)),
    }
    return Detection(float(result.statistic), p_threshold, bool(result.pvalue < p_threshold), detail)


_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def vocabulary(texts: Iterable[str]) -> set[str]:
    return {w for text in texts for w in words(text)}


def oov_rate(texts: Iterable[str], known: set[str]) -> float:
    seen = [w for text in texts for w in words(text)]
    return sum(w not in known for w in seen) / max(len(seen), 1)


def oov_shift(reference_rate: float, recent_rate: float, threshold: float) -> Detection:
    """Rise in the share of words never seen in training (reference: held-out data's own share)."""
    rise = recent_rate - reference_rate
    detail = {"reference_rate": reference_rate, "recent_rate": recent_rate}
    return Detection(rise, threshold, rise > threshold, detail)


def label_counts(labels: Sequence[str], names: Sequence[str]) -> np.ndarray:
    counts = np.array([sum(label == name for label in labels) for name in names], dtype=np.float64)
    return counts


def prediction_shift(
    reference: Sequence[str], recent: Sequence[str], names: Sequence[str], threshold: float
) -> Detection:
    """PSI of predicted label shares (smoothed), with the chi-square test's p-value in the detail."""
    from scipy.stats import chi2_contingency

    ref_counts, rec_counts = label_counts(reference, names), label_counts(recent, names)
    ref_share = (ref_counts + 0.5) / (ref_counts.sum() + 0.5 * len(names))
    rec_share = (rec_counts + 0.5) / (rec_counts.sum() + 0.5 * len(names))
    psi = float(((rec_share - ref_share) * np.log(rec_share / ref_share)).sum())
    table = np.vstack([ref_counts, rec_counts])
    table = table[:, table.sum(0) > 0]
    p_value = float(chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
    detail = {
        "chi2_p_value": p_value,
        "reference_shares": dict(
            zip(names, (ref_counts / max(ref_counts.sum(), 1)).round(4).tolist(), strict=True)
        ),
        "recent_shares": dict(
            zip(names, (rec_counts / max(rec_counts.sum(), 1)).round(4).tolist(), strict=True)
        ),
    }
    return Detection(psi, threshold, psi > threshold, detail)


def confidence_drop(reference: Sequence[float], recent: Sequence[float], threshold: float) -> Detection:
    drop = float(np.mean(reference) - np.mean(recent))
    detail = {"reference_mean": float(np.mean(reference)), "recent_mean": float(np.mean(recent))}
    return Detection(drop, threshold, drop > threshold, detail)
