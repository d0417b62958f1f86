"""Tasks: how records become model inputs, and predictions become metrics. One file per task."""

from tunesmith.registry import Registry
from tunesmith.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task")

from tunesmith.tasks import classification  # noqa: E402,F401  (registers itself)

__all__ = ["TASKS", "Task"]
