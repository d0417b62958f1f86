"""Tasks: how records become model inputs, and predictions become metrics. One file per task."""

from tunesmith.errors import UserError
from tunesmith.models.catalog import CATALOG
from tunesmith.models.kinds import kind_of
from tunesmith.plugin import PluginParams
from tunesmith.registry import Registry
from tunesmith.sections import ModelConfig
from tunesmith.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task")

from tunesmith.tasks import (  # noqa: E402,F401  (each registers itself)
    chat,
    classification,
    embedding,
    multilabel,
    preference,
    qa,
    regression,
    summarization,
    tokens,
)


def build_task(params: PluginParams, model_cfg: ModelConfig) -> Task:
    """The task for this config, in the variant that suits the model's kind; a model of a kind the task
    cannot use is refused here, before any weights load."""
    kind = kind_of(model_cfg.name)
    cls = TASKS.get(params.name).variant_for(kind)
    if kind is not None and kind not in cls.model_kinds:
        suited = ", ".join(e.name for e in CATALOG.values() if e.kind in cls.model_kinds) or "none"
        raise UserError(
            f"model {model_cfg.name!r} is {'an' if kind == 'encoder' else 'a'} {kind} model; the {params.name} task needs a model of kind "
            f"{' or '.join(cls.model_kinds)} (in the catalog: {suited})"
        )
    task = cls(params, model_cfg)
    task.set_model_kind(kind or cls.model_kinds[0])
    return task


__all__ = ["TASKS", "Task", "build_task"]
