"""`tunesmith plan`: before anything trains, what each method will cost on this machine with this model and
data (planning/estimate.py measures it), and which one to use under a memory budget. `tunesmith train`
prints the same estimate for its own method and refuses a run over `train.memory_budget`, naming a cheaper
method that fits."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

from tunesmith.config import RunConfig, build_config, dump_config
from tunesmith.errors import UserError
from tunesmith.methods import METHODS, Method
from tunesmith.planning.estimate import Estimate, estimate, format_seconds
from tunesmith.planning.memory import parse_budget
from tunesmith.processes import ChildDied, run_apart
from tunesmith.quiet import quiet_libraries
from tunesmith.recipes.prepare import Prepared, prepare
from tunesmith.training.loop import total_steps
from tunesmith.training.setup import build_model, training_device
from tunesmith.units import human


def preference_order() -> list[str]:
    """The methods in the order a plan recommends them when several fit (each class's `preference`)."""
    return sorted(METHODS.names(), key=lambda name: (METHODS.get(name).preference, name))


def fallback_order() -> list[str]:
    """The methods a run over its memory budget is pointed to, in the order they are tried (`fallback`)."""
    named = [name for name in METHODS.names() if METHODS.get(name).fallback is not None]
    return sorted(named, key=lambda name: METHODS.get(name).fallback)


@dataclass
class Plan:
    estimates: list[Estimate]
    skipped: dict[str, str] = field(default_factory=dict)
    """Methods that cannot run here, with why."""
    budget: int | None = None
    recommended: str | None = None
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "budget_bytes": self.budget,
            "recommended": self.recommended,
            "reason": self.reason,
            "methods": [e.as_json() | {"fits": self.fits(e)} for e in self.estimates],
            "skipped": self.skipped,
        }

    def fits(self, e: Estimate) -> bool:
        return self.budget is None or e.peak_bytes <= self.budget


def method_for(config: RunConfig, name: str) -> Method:
    """The config's method with its own settings, or another one with its defaults for the config's task."""
    cls = METHODS.get(name)
    if config.method.name == name:
        return cls(config.method)
    return cls(cls.fill_task_defaults(config.task.name, cls.Params(name=name)))


def measure(prepared: Prepared, method: Method, device: torch.device) -> Estimate:
    """Load the base for `method`, apply it and calibrate, in this process (best a fresh one: see
    `measure_apart`); the model is freed afterwards."""
    cfg = prepared.config.train.model_copy(
        update={
            "learning_rate": prepared.config.train.learning_rate
            or method.learning_rate_for(prepared.task.name)
        }
    )
    steps = total_steps(len(prepared.train_features), cfg)
    model, _ = build_model(prepared.task, prepared.resolved, method, cfg, device, steps)
    try:
        return estimate_for(prepared, model, method, cfg)
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def estimate_for(prepared: Prepared, model: torch.nn.Module, method: Method, cfg: Any) -> Estimate:
    """planning.estimate on the prepared run's own examples."""
    pad_id = prepared.tokenizer.pad_token_id or 0
    return estimate(prepared.task, model, method, prepared.train_features, prepared.val_features, cfg, pad_id)


def _measure_child(config_yaml: str, name: str, queue: Any) -> None:
    quiet_libraries()
    try:
        config = build_config(yaml.safe_load(config_yaml))
        prepared = prepare(config)
        queue.put(asdict(measure(prepared, method_for(config, name), training_device(config))))
    except Exception as exc:  # reported by the parent, with the method's name
        queue.put(f"{type(exc).__name__}: {exc}")


def measure_apart(config: RunConfig, name: str) -> Estimate:
    """`measure` in a fresh process, as `tunesmith train` would start: its memory is that method's alone."""
    try:
        answer = run_apart(_measure_child, dump_config(config), name)
    except ChildDied as exc:
        raise UserError(
            f"calibrating method {name}: {exc} (killed for lack of memory? try a smaller train.batch_size)"
        ) from None
    if isinstance(answer, str):
        raise UserError(f"calibrating method {name} failed: {answer}")
    return Estimate(**answer)


def plan(config: RunConfig, methods: list[str], budget: str | None, progress: Callable[[str], None]) -> Plan:
    budget_bytes = parse_budget(budget)
    prepared = prepare(config)  # the data check's errors, once, before any calibration
    result = Plan([], budget=budget_bytes)
    for name in methods:
        method = method_for(config, name)
        if (why := method.incompatibility(prepared.task)) is not None:
            result.skipped[name] = why
            continue
        progress(f"calibrating {name}")
        result.estimates.append(measure_apart(config, name))
    recommend(result)
    return result


def recommend(result: Plan) -> None:
    fitting = [e for e in result.estimates if result.fits(e)]
    if not result.estimates:
        result.reason = "no method can fine-tune this task here"
        return
    if not fitting:
        smallest = min(result.estimates, key=lambda e: e.peak_bytes)
        result.reason = (
            f"none fits in {human(result.budget or 0)}; the smallest is {smallest.method} at "
            f"≈ {human(smallest.peak_bytes)}: lower train.batch_size or model.max_length, or turn on "
            "train.gradient_checkpointing"
        )
        return
    preferred = preference_order()
    order = {name: i for i, name in enumerate(preferred)}
    best = min(fitting, key=lambda e: order.get(e.method, len(order)))
    result.recommended = best.method
    if result.budget:
        result.reason = f"the first that fits in {human(result.budget)}, in the order {', '.join(preferred)}"
    else:
        result.reason = "the usual first choice; give --memory-budget to choose by what fits"


def cheaper_methods(prepared: Prepared, current: str, budget: int) -> str:
    """The first method of `fallback_order` that fits the budget, measured, as a hint for a refused run."""
    for name in fallback_order():
        if name == current:
            continue
        method = method_for(prepared.config, name)
        if method.incompatibility(prepared.task) is not None:
            continue
        e = measure_apart(prepared.config, name)
        if e.peak_bytes <= budget:
            return f"method {name} fits (≈ {human(e.peak_bytes)}): --method {name}"
    return (
        "no cheaper method fits either: lower train.batch_size or model.max_length, or turn on "
        "train.gradient_checkpointing"
    )


def print_plan(console: Console, result: Plan, config: RunConfig) -> None:
    """The plan as `tunesmith plan` prints it: one row per method (trainable parameters, memory by part,
    time per epoch), whether each fits the budget, and the recommendation."""
    cfg = config.train
    table = Table(
        title=f"{config.task.name} on {config.model.name}: batch {cfg.batch_size}, "
        f"max_length {config.model.max_length}, {cfg.epochs} epochs"
    )
    for col in (
        "method",
        "trainable",
        "weights",
        "grad+optim",
        "activations",
        "evaluation",
        "peak",
        "time/epoch",
    ):
        table.add_column(col, justify="left" if col == "method" else "right")
    if result.budget is not None:
        table.add_column("fits", justify="center")
    for e in result.estimates:
        row = [
            ("[bold]" if e.method == result.recommended else "") + e.method,
            f"{_count(e.trainable_parameters)} ({100 * e.trainable_parameters / max(e.total_parameters, 1):.2f}%)",
            human(e.weights_bytes),
            human(e.gradients_bytes + e.optimizer_bytes),
            human(e.activations_bytes),
            human(e.evaluation_bytes),
            human(e.peak_bytes),
            format_seconds(e.epoch_seconds),
        ]
        if result.budget is not None:
            row.append("yes" if result.fits(e) else "[red]no[/]")
        table.add_row(*row)
    console.print(table)
    if result.estimates:
        console.print(
            f"[dim]peak memory includes {human(result.estimates[0].runtime_bytes)} for the process itself "
            "(Python, torch, tokenizer, data); times from timed steps on this machine[/]"
        )
    for name, why in result.skipped.items():
        console.print(f"[dim]{name}: not for this run: {why}[/]")
    if result.recommended:
        console.print(f"recommended: [bold]{result.recommended}[/] ({result.reason})")
    else:
        console.print(f"[red]{result.reason}[/]")


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e4 else f"{n:,}"
