import random

import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from tunesmith.evaluation.metrics import classification_metrics


def test_metrics_match_scikit_learn():
    rng = random.Random(0)
    truth = [rng.randrange(4) for _ in range(300)]
    preds = [t if rng.random() < 0.6 else rng.randrange(4) for t in truth]
    m = classification_metrics(truth, preds, ["a", "b", "c", "d"])
    assert m["accuracy"] == accuracy_score(truth, preds)
    assert m["macro_f1"] == f1_score(truth, preds, average="macro")
    assert m["weighted_f1"] == f1_score(truth, preds, average="weighted")
    assert m["macro_precision"] == precision_score(truth, preds, average="macro")
    assert m["macro_recall"] == recall_score(truth, preds, average="macro")
    assert m["per_class"]["c"]["f1"] == f1_score(truth, preds, average=None)[2]
    assert m["confusion_matrix"] == confusion_matrix(truth, preds).tolist()


def test_a_class_never_predicted_scores_zero_not_an_error():
    m = classification_metrics([0, 1, 2], [0, 0, 0], ["a", "b", "c"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert len(m["confusion_matrix"]) == 3


def test_a_class_the_model_never_predicts_is_named():
    metrics = classification_metrics([0, 0, 1, 2, 2], [0, 0, 0, 2, 2], ["a", "rare", "c"])
    assert metrics["never_predicted"] == ["rare"]
    # a class without test examples is not "never predicted": there was nothing to predict
    assert classification_metrics([0, 2], [0, 2], ["a", "b", "c"])["never_predicted"] == []


def test_balanced_class_weights_only_when_the_classes_are_imbalanced():
    from tunesmith.tasks.classification import IMBALANCED, class_weights

    even = [0, 1, 2] * 10
    assert class_weights(even, 3, "auto") is None and class_weights(even, 3, "none") is None
    assert class_weights(even, 3, "balanced").tolist() == [1.0, 1.0, 1.0]
    skewed = [0] * int(IMBALANCED * 10 + 1) + [1] * 10
    weights = class_weights(skewed, 2, "auto")
    assert weights is not None and weights[1] / weights[0] == pytest.approx(IMBALANCED + 0.1)
    assert class_weights(skewed, 2, "none") is None
