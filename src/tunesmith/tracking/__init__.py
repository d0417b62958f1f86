"""Trackers: a run's numbers, live, in the tools people already watch (`train.report_to`).

Every tracker receives the same things (tracking/records.py turns the run's own records into them): the
resolved config as params; loss, learning rate, samples/s and every validation metric by step; the data
check; the planner's estimate next to what was measured; base vs tuned on the test split with intervals;
forgetting; the run's files. They run on one background thread (tracking/worker.py), so training never waits
on them, and one that fails warns once and stops while training goes on. One file per tracker, plus its name
in TRACKER_MODULES.
"""

from importlib import import_module

from tunesmith.registry import Registry
from tunesmith.tracking.base import Tracker

TRACKERS: Registry[type[Tracker]] = Registry("tracker")

TRACKER_MODULES = ("mlflow_tracker", "tensorboard_tracker")
"""Each module registers its tracker on import (named so as not to shadow the libraries they drive)."""
for _module in TRACKER_MODULES:
    import_module(f"tunesmith.tracking.{_module}")

__all__ = ["TRACKERS", "Tracker"]
