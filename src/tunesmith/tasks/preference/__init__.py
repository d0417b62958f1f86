"""Preference tuning's objectives: which of two answers a person prefers (DPO, IPO, ORPO, SimPO), or whether
one answer is good (KTO). One loss per module; each registers itself in LOSSES (a new loss is one file and one
name in LOSS_MODULES). The losses work on per-example answer log-probabilities (loss.Scores), so they are
pure functions of numbers a test can compute by hand; the task that feeds them (task.py) is built on top."""

from importlib import import_module

from tunesmith.tasks.preference.loss import LOSSES, Outcome, PreferenceLoss, Scores

LOSS_MODULES = ("dpo", "ipo", "kto", "orpo", "simpo")
"""Each module registers its loss on import."""
for _module in LOSS_MODULES:
    import_module(f"tunesmith.tasks.preference.{_module}")

from tunesmith.tasks.preference import task  # noqa: E402,F401  (registers the task)

__all__ = ["LOSSES", "Outcome", "PreferenceLoss", "Scores"]
