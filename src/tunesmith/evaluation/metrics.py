"""Classification metrics, all computed by scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy; macro and weighted precision/recall/F1; per-class scores; confusion matrix (rows = truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support  # 1.5 s

    ids = list(range(len(labels)))
    out: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred)), "examples": len(y_true)}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=ids, average=average, zero_division=0
        )
        out[f"{average}_precision"] = float(p)
        out[f"{average}_recall"] = float(r)
        out[f"{average}_f1"] = float(f)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    # classes the examples have that the model never predicts: a rare class it gave up on
    predicted = set(y_pred)
    out["never_predicted"] = [name for i, name in enumerate(labels) if s[i] > 0 and i not in predicted]
    return out


HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1")
"""The metrics printed in tables; the JSON output carries everything."""


LOWER_IS_BETTER = frozenset({"perplexity", "mse", "rmse", "mae"})
"""Metrics where less is better besides the losses (names ending in `loss`): errors in the target's units."""


def greater_is_better(metric: str) -> bool:
    return not metric.endswith("loss") and metric not in LOWER_IS_BETTER
