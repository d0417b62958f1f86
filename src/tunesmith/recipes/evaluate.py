"""The tuned model against the untuned base on the same examples: the test split after training, and
`tunesmith eval` on any file later."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.evaluation.bootstrap import paired_intervals
from tunesmith.evaluation.forgetting import GeneralAbility, forgetting
from tunesmith.evaluation.report import comparison
from tunesmith.models.catalog import ResolvedModel, resolve_model
from tunesmith.tasks import Task


def evaluate_examples(
    trained: Any, examples: list[Any], base: Any = None, base_general: GeneralAbility | None = None
) -> dict[str, Any]:
    """Tuned vs base on the same examples, with the same metric code, the interval of the difference, a few
    example outputs, and what tuning cost in general ability. `base` and `base_general`: the base model's
    evaluation and general ability when the caller measured them already (before the tuned model loaded, to
    hold one model less in memory)."""
    task, cfg = trained.task, trained.config
    features = task.encode(examples, trained.tokenizer)
    tuned = task.evaluate(trained.model, features, cfg.train.eval_batch_size, trained.pad_id)
    resolved = resolve_model(cfg.model.name)
    if base is None:
        base = task.evaluate_baseline(resolved, examples, trained.run.probe)
    intervals = {}
    if base is not None and cfg.evaluation.bootstrap_resamples:
        tuned_resampler, base_resampler = task.resampler(features, tuned), task.resampler(features, base)
        if tuned_resampler and base_resampler:
            intervals = paired_intervals(
                tuned_resampler,
                base_resampler,
                len(tuned.predictions),  # what is resampled: examples (a long text's windows are one)
                resamples=cfg.evaluation.bootstrap_resamples,
                seed=cfg.train.seed,
            )
    report = comparison(
        tuned.metrics,
        base.metrics if base else None,
        task.baseline_description,
        task.headline,
        task.shown_examples(features, tuned, base),
        intervals,
        trained.run.holds(),
    )
    if cfg.evaluation.forgetting:
        device = next(trained.model.parameters()).device
        if base_general is None:
            base_general = base_general_ability(task, resolved, device)
        tuned_general = task.general_ability(trained.model)
        if base_general is not None and tuned_general is not None:
            report["forgetting"] = forgetting(base_general, tuned_general, cfg.evaluation)
    return report


def base_general_ability(task: Task, resolved: ResolvedModel, device: torch.device) -> GeneralAbility | None:
    """The untuned base model's scores on the general reference (loaded for this, then freed)."""
    model = task.load_model(resolved).to(device)
    try:
        return task.general_ability(model)
    finally:
        del model
