"""Multi-label metrics against a hand-worked example and scikit-learn; the bootstrap's resampled metrics
against scikit-learn on the same resample; per-label thresholds tuned on validation."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.evaluation.multilabel import (
    decide,
    multilabel_metrics,
    multilabel_resampler,
    tune_thresholds,
)

LABELS = ["cli", "gui", "net"]


def test_metrics_of_a_small_example_worked_out_by_hand() -> None:
    truth = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    m = multilabel_metrics(truth, predicted, LABELS)
    # tp: cli 2, gui 1, net 0; fp: gui 1; fn: net 1
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    # examples: 2/3 (one of two found), 1, 1 (nothing to find, nothing said), 2/3 (one extra)
    assert m["samples_f1"] == pytest.approx((2 / 3 + 1 + 1 + 2 / 3) / 4)
    assert m["subset_accuracy"] == pytest.approx(2 / 4)
    assert m["hamming_loss"] == pytest.approx(2 / 12)
    assert m["per_label"]["net"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["never_predicted"] == ["net"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_resampler_recomputes_what_scikit_learn_computes_on_each_resample(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.random((60, 5)) < 0.3
    truth[:, 4] = False  # a label no example has
    predicted = np.where(rng.random((60, 5)) < 0.8, truth, ~truth)
    predicted[:3] = truth[:3] = False  # examples with no label, rightly none predicted
    resample = multilabel_resampler(truth, predicted)
    draws = np.vstack([np.arange(60), rng.integers(0, 60, size=(4, 60))])
    got = resample(draws)
    for row, indices in enumerate(draws):
        expected = multilabel_metrics(truth[indices], predicted[indices], [str(i) for i in range(5)])
        for name, values in got.items():
            assert values[row] == pytest.approx(expected[name]), name


def test_thresholds_are_tuned_per_label_on_validation() -> None:
    probabilities = np.array([[0.9, 0.30, 0.2], [0.7, 0.25, 0.1], [0.2, 0.10, 0.3], [0.1, 0.05, 0.4]])
    truth = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    thresholds = tune_thresholds(probabilities, truth)
    # cli separates anywhere in (0.2, 0.7]: the nearest 0.5 wins; gui needs <= 0.25; net has no positive
    assert thresholds.tolist() == [0.5, 0.25, 0.5]
    assert decide(probabilities, thresholds).tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_the_one_vs_rest_probe_is_each_labels_logistic_regression(tmp_path) -> None:
    from sklearn.linear_model import LogisticRegression

    from tunesmith.evaluation.baseline import MultiLabelProbe

    rng = np.random.default_rng(0)
    features = rng.normal(size=(80, 6)).astype(np.float32)
    truth = np.stack([features[:, 0] > 0, features[:, 1] + features[:, 2] > 0.5, np.ones(80, bool)], 1)
    probe = MultiLabelProbe.fit(features, truth.astype(int), seed=0)
    probe.save(tmp_path / "probe.safetensors")
    loaded = MultiLabelProbe.load(tmp_path / "probe.safetensors")
    got = loaded.probabilities(features)
    for j in range(2):
        own = LogisticRegression(max_iter=2000, random_state=0).fit(features, truth[:, j])
        assert got[:, j] == pytest.approx(own.predict_proba(features)[:, 1], abs=1e-5)
    assert (got[:, 2] > 0.999).all()  # every training example has it: no regression, always predicted
