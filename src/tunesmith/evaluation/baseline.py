"""The base model's score on the same task: the frozen pretrained encoder with only a linear head trained.

Texts are embedded by the untouched encoder (mean of the last hidden states, the pooling sentence encoders
such as MiniLM were trained with), and a logistic-regression head is fitted on the training split. That is
the best the base model does without fine-tuning its weights, so "tuned minus base" is what tuning bought.
The head is stored as safetensors (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from tunesmith.data.padding import pad
from tunesmith.data.token_batches import token_capped_batches
from tunesmith.models.pooled import mean_pool

DESCRIPTION = (
    "base = the frozen pretrained encoder with only a linear head trained (logistic regression on "
    "mean-pooled embeddings, fitted on the same training split)"
)


def embed(
    encoder: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    max_tokens: int | None = None,
) -> np.ndarray:
    """Mean-pooled embeddings of `texts`, each cut at `max_length` tokens, in batches of at most `batch_size`
    texts and `max_tokens` padded tokens (None: no token cap)."""
    rows = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return embed_ids(encoder, rows, tokenizer.pad_token_id or 0, batch_size, max_tokens)


@torch.inference_mode()
def embed_ids(
    encoder: torch.nn.Module,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 64,
    max_tokens: int | None = None,
    token_types: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Mean-pooled embeddings of token-id rows (special tokens included), batched as `embed` does;
    `token_types`: each row's token type ids (text pairs), None: all 0."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = np.zeros((len(rows), encoder.config.hidden_size), dtype=np.float32)
    for idx in token_capped_batches([len(r) for r in rows], batch_size, max_tokens):
        ids, attention = pad([list(rows[i]) for i in idx], pad_id)
        extra = {}
        if token_types is not None:
            extra["token_type_ids"] = pad([list(token_types[i]) for i in idx], 0)[0].to(device)
        ids, attention = ids.to(device), attention.to(device)
        hidden = encoder(input_ids=ids, attention_mask=attention, **extra).last_hidden_state
        out[idx] = mean_pool(hidden, attention).float().cpu().numpy()
    return out


MISSING_LABEL_MARGIN = 10.0
"""How far below the probe's lowest bias a label it never saw starts in the head (softmax e^-10: 4.5e-5)."""


class LinearProbe:
    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray):
        self.coef, self.intercept, self.classes = coef, intercept, classes

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: Sequence[int], seed: int, class_weights: np.ndarray | None = None
    ) -> LinearProbe:
        """Logistic regression; `class_weights[c]` weighs the examples of class c (the task's loss weights)."""
        from sklearn.linear_model import LogisticRegression

        weights = None if class_weights is None else dict(enumerate(class_weights.tolist()))
        clf = LogisticRegression(max_iter=2000, random_state=seed, class_weight=weights)
        clf.fit(features, np.asarray(labels))
        return cls(
            clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32), clf.classes_.astype(np.int64)
        )

    def predict(self, features: np.ndarray) -> list[int]:
        scores = features @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # binary: one score, positive means the second class
            return self.classes[(scores[:, 0] > 0).astype(int)].tolist()
        return self.classes[scores.argmax(1)].tolist()

    def as_head(self, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) of a linear layer with one output per label that ranks the labels as the probe does.
        A binary probe's one score s becomes the logits (-s/2, s/2): their softmax is the probe's sigmoid."""
        weight = np.zeros((num_labels, self.coef.shape[1]), dtype=np.float32)
        bias = np.zeros(num_labels, dtype=np.float32)
        if self.coef.shape[0] == 1:
            low, high = self.classes
            weight[low], weight[high] = -self.coef[0] / 2, self.coef[0] / 2
            bias[low], bias[high] = -self.intercept[0] / 2, self.intercept[0] / 2
        else:
            weight[self.classes] = self.coef
            bias[self.classes] = self.intercept
            # a label the training split never had (token classification: an I- tag no entity needed) starts
            # well below every other: the head ranks as the probe, which never predicts it
            missing = np.setdiff1d(np.arange(num_labels), self.classes)
            bias[missing] = self.intercept.min() - MISSING_LABEL_MARGIN
        return weight, bias

    def save(self, path: Path) -> None:
        # safetensors writes raw bytes: sklearn's coef_ is Fortran-ordered, so make every array C-ordered.
        arrays = {"coef": self.coef, "intercept": self.intercept, "classes": self.classes}
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> LinearProbe:
        tensors = load_file(str(path))
        return cls(tensors["coef"], tensors["intercept"], tensors["classes"])


class MultiLabelProbe:
    """Multi-label: one logistic regression per label on the frozen embeddings (one-vs-rest), as a linear
    layer with a sigmoid per label, so it is also the tuned model's starting head."""

    CERTAIN = 10.0
    """The logit of a label every training example has (sigmoid 0.99995): no regression to fit."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray | None = None):
        self.coef, self.intercept = coef, intercept
        self.thresholds = np.full(len(intercept), 0.5, np.float32) if thresholds is None else thresholds
        """Each label's decision threshold (the task tunes them on validation)."""

    @classmethod
    def fit(cls, features: np.ndarray, truth: np.ndarray, seed: int) -> MultiLabelProbe:
        """`truth`: examples x labels 0/1."""
        from sklearn.linear_model import LogisticRegression

        labels = truth.shape[1]
        coef = np.zeros((labels, features.shape[1]), dtype=np.float32)
        intercept = np.zeros(labels, dtype=np.float32)
        for j in range(labels):
            column = np.asarray(truth[:, j], dtype=int)
            if column.min() == column.max():
                intercept[j] = cls.CERTAIN if column[0] else -cls.CERTAIN
                continue
            clf = LogisticRegression(max_iter=2000, random_state=seed).fit(features, column)
            coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
        return cls(coef, intercept)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Examples x labels: each label's sigmoid probability."""
        return 1.0 / (1.0 + np.exp(-(features @ self.coef.T + self.intercept)))

    def as_head(self, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
        return self.coef, self.intercept

    def save(self, path: Path) -> None:
        arrays = {"coef": self.coef, "intercept": self.intercept, "thresholds": self.thresholds}
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> MultiLabelProbe:
        tensors = load_file(str(path))
        return cls(tensors["coef"], tensors["intercept"], tensors["thresholds"])


class RidgeProbe:
    """Regression: ridge regression of the (normalised) target on the frozen embeddings, its penalty chosen
    among RIDGE_ALPHAS by leave-one-out error on the training split (scikit-learn's RidgeCV); a linear layer
    with one output, so it is also the tuned model's starting head."""

    RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))
    """Penalties tried: from nearly none to one that flattens the fit, a half decade apart."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, alpha: float = 0.0):
        self.coef, self.intercept, self.alpha = coef, intercept, alpha

    @classmethod
    def fit(cls, features: np.ndarray, target: np.ndarray) -> RidgeProbe:
        from sklearn.linear_model import RidgeCV

        ridge = RidgeCV(alphas=cls.RIDGE_ALPHAS).fit(features, np.asarray(target, dtype=np.float64))
        coef = np.asarray(ridge.coef_, dtype=np.float32).reshape(1, -1)
        return cls(coef, np.asarray([ridge.intercept_], dtype=np.float32), float(ridge.alpha_))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (features @ self.coef.T + self.intercept)[:, 0]

    def as_head(self, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
        return self.coef, self.intercept

    def save(self, path: Path) -> None:
        arrays = {"coef": self.coef, "intercept": self.intercept, "alpha": np.asarray([self.alpha])}
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> RidgeProbe:
        tensors = load_file(str(path))
        return cls(tensors["coef"], tensors["intercept"], float(tensors["alpha"][0]))
