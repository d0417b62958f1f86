"""`tunesmith tune`: hyperparameter search when results disappoint.

Optuna's TPE sampler proposes values for the keys in `search.space`; each trial is a real `finetune` run in
its own folder (`trial-000/`, ...), compared on the validation metric only (the test split stays unseen
until the chosen config is trained). The median pruner reads the metric after every validation (each
epoch) and stops trials that trail the median of earlier trials at the same epoch. The study lives in an
SQLite file in the search folder, so an interrupted search resumes where it stopped: `tune` again runs only
the trials still missing. The best trial's config is written as `best.yaml`, ready for `tunesmith train`.

    search folder/
      search.db      the Optuna study (every trial, its values and per-epoch reports)
      trial-NNN/     each trial's run folder (no test evaluation)
      trials.json    a summary of every trial
      best.yaml      the run config with the best values, output_dir set for the final run
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from tunesmith.config import RunConfig, build_config, set_dotted
from tunesmith.errors import ConfigError
from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.prepare import prepare
from tunesmith.runs import writing
from tunesmith.sections import SearchRange

STUDY = "tunesmith"


@dataclass
class SearchResult:
    folder: Path
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    trials: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_config": str(self.best_config) if self.best_config else None,
            "trials": self.trials,
        }

    def print(self, console: Console) -> None:
        """What `tunesmith tune` prints at the end: trials done and pruned, the best, and the next command."""
        done = sum(t["state"] in ("complete", "pruned") for t in self.trials)
        pruned = sum(t["state"] == "pruned" for t in self.trials)
        console.print(f"{done} trials ({pruned} pruned) in {self.folder}")
        if self.best_config is None:
            console.print("no trial completed")
            return
        console.print(f"best: {self.best_params} -> validation {self.best_value:.4f}")
        console.print(f"next: tunesmith train --config {self.best_config}")


def search_folder(config: RunConfig, out: Path | None) -> Path:
    if out is not None:
        return Path(out)
    if config.output_dir is None:
        raise ConfigError(
            "no search folder: give --out FOLDER, or output_dir in the config (then OUTPUT-search)"
        )
    return Path(f"{config.output_dir}-search")


def trial_config(base: dict[str, Any], values: dict[str, Any], folder: Path) -> RunConfig:
    tree = json.loads(json.dumps(base))  # a deep copy of plain data
    for key, value in values.items():
        set_dotted(tree, key.split("."), value)
    tree["output_dir"] = str(folder)
    return build_config(tree)


def suggest(trial: Any, key: str, space: SearchRange) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(key, space.choices)
    if space.integer:
        step = int(space.step) if space.step else 1
        return trial.suggest_int(key, int(space.low), int(space.high), step=step, log=space.log)
    return trial.suggest_float(key, float(space.low), float(space.high), step=space.step, log=space.log)


def check_space(config: RunConfig, base: dict[str, Any], folder: Path) -> None:
    """Refuse a space whose keys or values the config would reject, before any trial runs."""
    space = config.search.space
    if not space:
        raise ConfigError(
            "search.space is empty: name what to search, e.g. search.space: {train.learning_rate: "
            "{low: 1e-5, high: 1e-3, log: true}, method.rank: {choices: [4, 8, 16]}}"
        )
    if "method.name" in space or "task.name" in space:
        raise ConfigError(
            "search one method and task at a time (compare methods with `tunesmith plan` and "
            "`tunesmith compare`); remove method.name / task.name from search.space"
        )
    for key, r in space.items():
        for value in r.choices if r.choices is not None else [r.low, r.high]:
            try:
                trial_config(base, {key: value}, folder)
            except ConfigError as exc:
                raise ConfigError(f"search.space.{key} = {value!r}: {exc}") from None
    for i, values in enumerate(config.search.enqueue):
        unknown = set(values) - set(space)
        if unknown:
            raise ConfigError(
                f"search.enqueue[{i}] names keys not in search.space: {', '.join(sorted(unknown))}"
            )


def tune(config: RunConfig, console: Console, out: Path | None = None) -> SearchResult:
    """The search in its folder, locked against other writers meanwhile (runs.writing)."""
    folder = search_folder(config, out)
    with writing(folder):
        return _search(config, console, folder)


def _search(config: RunConfig, console: Console, folder: Path) -> SearchResult:
    metric = config.search.metric or config.train.metric
    if config.model.max_length is None and "model.max_length" not in config.search.space:
        prepare(config)  # chooses model.max_length from the data once (recipes/check.py), not in every trial
    base = config.model_dump(mode="json")
    base["train"]["metric"] = metric
    base["search"] = {}  # trials do not search
    check_space(config, base, folder / "trial-check")
    folder.mkdir(parents=True, exist_ok=True)
    study, missing = _open_study(config, folder, metric, console)
    if missing:
        objective = _objective(config, base, folder, metric, console)
        study.optimize(objective, n_trials=missing, catch=())
    return _finish(study, config, folder, metric)


def _open_study(config: RunConfig, folder: Path, metric: str, console: Console) -> tuple[Any, int]:
    """The search's Optuna study in folder/search.db (created, or resumed with its trials left running by an
    interrupted search marked failed), and how many trials it still needs."""
    import optuna  # here: a second to import, and only `tune` needs it

    optuna.logging.set_verbosity(logging.WARNING)
    search = config.search
    study = optuna.create_study(
        study_name=STUDY,
        storage=f"sqlite:///{(folder / 'search.db').resolve()}",
        load_if_exists=True,
        direction="maximize" if greater_is_better(metric) else "minimize",
        sampler=optuna.samplers.TPESampler(seed=search.seed),
        pruner=(
            optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=0)
            if search.pruning
            else optuna.pruners.NopPruner()
        ),
    )
    states = optuna.trial.TrialState
    for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        study.tell(stale.number, state=states.FAIL)  # left running by an interrupted search
    finished = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))
    if finished == 0 and not study.get_trials(deepcopy=False):
        for values in search.enqueue:
            study.enqueue_trial(values)
    missing = max(search.trials - finished, 0)
    if finished:
        console.print(f"resuming the search in {folder}: {finished} trials done, {missing} to go")
    return study, missing


def _objective(
    config: RunConfig, base: dict[str, Any], folder: Path, metric: str, console: Console
) -> Callable[[Any], float]:
    """One trial: a run with the trial's values, trained and validated (no test evaluation), pruned at a
    validation that the median rule says will not win."""
    import optuna  # here: a second to import, and only `tune` needs it

    def objective(trial: Any) -> float:
        values = {key: suggest(trial, key, r) for key, r in config.search.space.items()}
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        console.print(f"[bold]trial {trial.number}[/]: {shown}")

        def report(state: Any, metrics: dict[str, float]) -> None:
            if metric not in metrics:
                return
            step = state.step if config.train.eval_every_steps else state.epoch
            trial.report(metrics[metric], step)
            if trial.should_prune():
                console.print(
                    f"  trial {trial.number} pruned at epoch {state.epoch}: {metric} {metrics[metric]:.4f}"
                )
                raise optuna.TrialPruned()

        result = finetune(
            trial_config(base, values, folder / f"trial-{trial.number:03d}"),
            console,
            overwrite=True,
            on_validation=[report],
            final_evaluation=False,
        )
        value = result.summary[f"best_validation_{metric}"]
        console.print(f"  trial {trial.number}: best validation {metric} {value:.4f}")
        return value

    return objective


def _finish(study: Any, config: RunConfig, folder: Path, metric: str) -> SearchResult:
    import optuna  # here: a second to import, and only `tune` needs it

    trials = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "params": t.params,
            "value": t.value,
            "reports": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "folder": str(folder / f"trial-{t.number:03d}"),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    (folder / "trials.json").write_text(json.dumps({"metric": metric, "trials": trials}, indent=2) + "\n")
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        return SearchResult(folder, None, {}, None, trials)
    best = study.best_trial
    tree = config.model_dump(mode="json")
    for key, value in best.params.items():
        set_dotted(tree, key.split("."), value)
    tree["train"]["metric"] = metric
    best_yaml = folder / "best.yaml"
    header = (
        f"# tunesmith tune: best of {len(trials)} trials on validation {metric} = {best.value:.4f} "
        f"(trial {best.number})\n# train it: tunesmith train --config {best_yaml}\n"
    )
    best_yaml.write_text(header + yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return SearchResult(folder, best.value, best.params, best_yaml, trials)
