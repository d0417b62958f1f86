"""Numeric targets (regression): values far from the rest, and splits whose targets sit elsewhere.

- outlier_target: a value more than OUTLIER_DEVIATIONS robust standard deviations (1.4826 x the median
  absolute deviation, the standard deviation of normal data that outliers do not inflate) from the training
  median: a typo or a value in other units, which squared error makes the model chase; fix or drop it.
- shifted_target: validation or test targets whose median lies more than SHIFT_DEVIATIONS robust standard
  deviations from training's: the splits measure the model on values it was not trained on.
A target that is not a number, or not finite, is an error of its line when the file is read; a training
target that never changes is refused there too (nothing to learn). The report's stats: each split's count,
mean, standard deviation, min, median and max.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tunesmith.data.checks.base import Check, Finding, plural, share
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

OUTLIER_DEVIATIONS = 5.0
"""Robust z beyond which a value is flagged: under a normal distribution 1 value in 1.7 million lies so far,
so a flagged value is almost surely not from the distribution of the rest."""
SHIFT_DEVIATIONS = 0.5
"""A split's median this many robust standard deviations from training's is flagged: half the spread, a
shift large enough to change what a model is measured on."""
MAD_TO_SD = 1.4826


def robust_spread(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation; the standard deviation where over half the values are equal."""
    mad = MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))
    return mad if mad > 0 else float(values.std())


@CHECKS.register("targets")
class Targets(Check):
    kinds = ("outlier_target", "shifted_target")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.values: dict[str, list[float]] = defaultdict(list)
        self.where: dict[str, list[str]] = defaultdict(list)

    def add(self, split: str, view: ExampleView) -> None:
        if view.value is None:
            return
        self.values[split].append(view.value)
        self.where[split].append(view.where)

    def findings(self) -> list[Finding]:
        train = np.asarray(self.values.get("train", []), dtype=np.float64)
        if len(train) < 2:
            return []
        center, spread = float(np.median(train)), robust_spread(train)
        if spread == 0:
            return []
        out = []
        for split, values in self.values.items():
            array = np.asarray(values, dtype=np.float64)
            far = np.nonzero(np.abs(array - center) > OUTLIER_DEVIATIONS * spread)[0]
            if len(far):
                shown = [f"{self.where[split][i]} ({array[i]:g})" for i in far[: self.cfg.examples_shown]]
                out.append(
                    Finding(
                        "warning",
                        "outlier_target",
                        f"{split}: {plural(len(far), 'target')} ({share(len(far), len(array))}) lie more than "
                        f"{OUTLIER_DEVIATIONS:g} robust standard deviations ({spread:.3g}) from the training "
                        f"median {center:.3g}: typos or other units? Squared error makes the model chase them; "
                        "fix or drop them",
                        shown,
                        len(far),
                    )
                )
            if split != "train" and len(array):
                moved = (float(np.median(array)) - center) / spread
                if abs(moved) > SHIFT_DEVIATIONS:
                    out.append(
                        Finding(
                            "warning",
                            "shifted_target",
                            f"{split}: its median target {np.median(array):.3g} is {abs(moved):.2f} robust "
                            f"standard deviations {'above' if moved > 0 else 'below'} training's ({center:.3g}): "
                            "it measures the model on values it seldom saw; split the data at random",
                            count=len(array),
                        )
                    )
        return out

    def stats(self) -> dict[str, Any]:
        out = {}
        for split, values in self.values.items():
            array = np.asarray(values, dtype=np.float64)
            out[split] = {
                "examples": len(array),
                "mean": round(float(array.mean()), 4),
                "sd": round(float(array.std()), 4),
                "min": float(array.min()),
                "median": float(np.median(array)),
                "max": float(array.max()),
            }
        return out
