"""Fine-tune: read and check the data, build the model and method, train, evaluate tuned vs base.

Everything that can fail on bad input (config, data files, labels, model name) runs before the run folder
is created or touched, so a mistake never costs earlier results.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from tunesmith.config import RunConfig, TrainConfig, dump_config
from tunesmith.data.checks.gate import CheckReport
from tunesmith.data.checks.render import print_report
from tunesmith.data.readers import FileFormat
from tunesmith.data.splits import stratified_split
from tunesmith.errors import ConfigError, UserError
from tunesmith.evaluation.bootstrap import paired_intervals
from tunesmith.evaluation.forgetting import GeneralAbility, forgetting
from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.evaluation.report import comparison
from tunesmith.methods import METHODS, Method, count_parameters
from tunesmith.models.catalog import ResolvedModel, resolve_model
from tunesmith.planning.estimate import Estimate, ShardedShare, worth_estimating
from tunesmith.planning.memory import human, peak_resident_bytes
from tunesmith.recipes.check import check_run_data, refuse_to_train
from tunesmith.recipes.plan import cheaper_methods, parse_budget, run_estimate, training_device
from tunesmith.runs import RunFolder, writing
from tunesmith.tasks import Task, build_task
from tunesmith.tasks.base import Splits
from tunesmith.training.checkpoint import LoopState, latest_checkpoint
from tunesmith.training.distributed import check_strategy, is_main_process
from tunesmith.training.interrupt import StopSignals
from tunesmith.training.loop import TrainLoop, total_steps


def load_splits(task: Task, config: RunConfig) -> Splits:
    """Train/validation/test from files, or split off the training file (stratified, seeded)."""
    data = config.data
    if data.train is None:
        raise ConfigError("no training data: give --data FILE or data.train in the config")
    fmt = FileFormat(data.format, data.delimiter)
    train = task.read(data.train, fmt)
    notes: list[str] = []
    held_out: dict[str, list[Any]] = {}
    for split, path, fraction in (
        ("test", data.test, data.test_fraction),
        ("validation", data.validation, data.validation_fraction),
    ):
        if path is not None:
            held_out[split] = task.read(path, fmt)
            continue
        labels = [getattr(ex, "label", "") or "" for ex in train]
        train, held_out[split], stratified = stratified_split(train, labels, fraction, data.split_seed)
        if held_out[split]:
            how = "stratified" if stratified else "random (some classes too small to stratify)"
            notes.append(
                f"{split}: {len(held_out[split])} examples split off {Path(data.train).name} ({how}, seed {data.split_seed})"
            )
    return Splits(train, held_out["validation"], held_out["test"], notes)


@dataclass
class Prepared:
    config: RunConfig
    task: Task
    method: Method
    splits: Splits
    resolved: ResolvedModel
    tokenizer: Any
    train_features: list[dict[str, Any]]
    val_features: list[dict[str, Any]]
    report: CheckReport


def prepare(config: RunConfig) -> Prepared:
    """All input checks: plugins, the data check (every error at once; training refuses on any, and on
    warnings with check.strict), model, and encoding every example. Touches no file."""
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda, but torch sees no CUDA GPU here; use train.device=auto or cpu")
    method = METHODS.get(config.method.name)(config.method)
    task = build_task(config.task, config.model)
    if (why := method.incompatibility(task)) is not None:
        raise ConfigError(
            f"method {method.name} cannot fine-tune the {task.name} task on {config.model.name}: {why}"
        )
    checked = check_run_data(config, task)
    refuse_to_train(checked.report, config.check.strict)
    task, tokenizer = checked.task, checked.tokenizer
    splits = load_splits(task, config)
    task.fit(splits.train, {"validation": splits.validation, "test": splits.test})
    train_features = task.encode(splits.train, tokenizer)
    val_features = task.encode(splits.validation, tokenizer) if splits.validation else []
    if splits.test:
        task.encode(splits.test, tokenizer)  # fails now, not after training, if a test example cannot encode
    return Prepared(
        config,
        task,
        method,
        splits,
        checked.resolved,
        tokenizer,
        train_features,
        val_features,
        checked.report,
    )


def _absolute_data_paths(config: RunConfig) -> RunConfig:
    data = config.data.model_copy(
        update={
            k: Path(v).resolve()
            for k in ("train", "validation", "test")
            if (v := getattr(config.data, k)) is not None
        }
    )
    return config.model_copy(update={"data": data})


@dataclass
class FinetuneResult:
    run: Path
    summary: dict[str, Any]
    evaluation: dict[str, Any] | None
    model: torch.nn.Module
    """The model as it stands at the end of training (the best one is in run/model)."""


def finetune(
    config: RunConfig,
    console: Console,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_step: list[Any] | None = None,
    on_validation: list[Any] | None = None,
    final_evaluation: bool = True,
) -> FinetuneResult:
    """Check the data, train with validation, keep the best model, then (with `final_evaluation`) fit the base
    model's baseline and evaluate base vs tuned on the test split, forgetting included. A search's trials
    skip that last part: they are compared on validation only. The run folder is locked against other
    writers meanwhile (runs.writing; by the main process of a distributed run, the one that writes)."""
    if config.output_dir is None:
        raise ConfigError("no run folder: give --out FOLDER or output_dir in the config")
    with writing(config.output_dir) if is_main_process() else nullcontext():
        return _finetune(
            config,
            console,
            resume=resume,
            overwrite=overwrite,
            on_step=on_step,
            on_validation=on_validation,
            final_evaluation=final_evaluation,
        )


def _finetune(
    config: RunConfig,
    console: Console,
    *,
    resume: bool,
    overwrite: bool,
    on_step: list[Any] | None,
    on_validation: list[Any] | None,
    final_evaluation: bool,
) -> FinetuneResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if config.output_dir is None:
        raise ConfigError("no run folder: give --out FOLDER or output_dir in the config")
    config = _absolute_data_paths(config)
    run = RunFolder(config.output_dir)
    if resume:
        if not run.is_run():
            raise UserError(f"nothing to resume: {run.root} is not a run folder")
        if run.summary.is_file() and run.eval.is_file():  # a run stopped before its test evaluation resumes
            raise UserError(f"{run.root} finished already; nothing to resume")
        if is_main_process():
            run.recover_model()
    main = is_main_process()
    if not main:  # the other processes of a distributed run compute; the main one prints and writes
        console = Console(file=io.StringIO())
    p = prepare(config)
    if not resume and main:
        run.check_creatable(overwrite)
    print_report(console, p.report)
    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # cpu=True also where no GPU exists: accelerate only sets up a multi-process CPU run (gloo) when told so
    on_cpu = training_device(config).type == "cpu"
    accelerator = Accelerator(cpu=on_cpu, mixed_precision=_precision(cfg.precision))
    if accelerator.num_processes > 1:
        check_strategy(config)
    set_seed(cfg.seed)
    probe = None
    if not (resume and run.probe.is_file()):
        # Fitted before the model loads (its base model is gone by then), in every process: the head may start
        # from it, and the fit is deterministic, so every process starts from the same weights.
        probe = Path(tempfile.mkdtemp(prefix="tunesmith-probe-")) / run.probe.name
        with console.status("fitting the base-model baseline"):
            p.task.fit_baseline(p.resolved, p.splits.train, probe, cfg.seed)
        set_seed(cfg.seed)  # the training starts from the same random state with or without it

    steps = total_steps(len(p.train_features), cfg)
    sharded = config.distributed.strategy == "fsdp" and accelerator.num_processes > 1
    base = p.task.load_model(p.resolved, **p.method.load_kwargs(str(accelerator.device)))
    baseline_file = probe if probe is not None else run.probe
    # a resumed run's checkpoint, if any, replaces the head again
    starts_as_base = p.task.init_head(base, baseline_file if baseline_file.is_file() else None)
    if not getattr(base, "is_quantized", False) and not sharded:
        base = base.to(accelerator.device)  # sharded, each unit's shard moves there: the whole never does
    model = p.method.apply(base, p.task.name, steps)
    start = "base" if starts_as_base and p.method.starts_as_base else None
    # A resume that finds no checkpoint (the run was stopped before its first) starts at step 0 as a new run
    # does, and must make the same start to reach the same weights.
    from_checkpoint = resume and latest_checkpoint(run.checkpoints) is not None
    if cfg.init_from is not None and not from_checkpoint:  # a checkpoint has these weights already
        start_from_run(model, cfg.init_from, p)
        start = "start"
    # From the base, training restarts from a fresh head once step 0 has validated the probe (task.head_init);
    # from a finished run (train.init_from) it goes on from that run's head and adapter together.
    restart = None if from_checkpoint or start == "start" else p.task.training_head(model, cfg.seed)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    p.task.prepare_model(model)
    cost: Estimate | ShardedShare | None = None
    if main and sharded:
        cost = ShardedShare.of(model, p.method.name, accelerator.num_processes)
        console.print(f"[dim]estimate: {cost.line()}[/]")
    elif main and worth_estimating(cfg, steps):
        # measured once; another process stopping on its own reading would leave the rest waiting
        with accelerator.autocast():
            cost = run_estimate(p, model, p.method, cfg)
        console.print(f"[dim]estimate: {cost.line()}[/]")
    elif main:
        console.print(
            f"[dim]estimate: skipped for a {steps}-step run (train.estimate={cfg.estimate}; "
            f"train.estimate=always measures it)[/]"
        )
    budget = parse_budget(cfg.memory_budget)
    if cost is not None and budget is not None and cost.peak_bytes > budget:
        del base, model
        if probe is not None:
            shutil.rmtree(probe.parent, ignore_errors=True)
        hint = cheaper_methods(p, p.method.name, budget)
        raise ConfigError(
            f"this {p.method.name} run needs {'at least' if sharded else '≈'} {human(cost.peak_bytes)} at its "
            f"peak, over "
            f"train.memory_budget={cfg.memory_budget}; {hint}"
        )
    if main:
        if not resume:
            run.create(overwrite)
            run.config.write_text(dump_config(config), encoding="utf-8")
            run.write_json(run.task, p.task.state())
        run.write_json(run.data_check, p.report.to_dict())
    if probe is not None:
        if main and probe.is_file():  # copied aside, then renamed in: a kill never leaves half a probe
            partial = run.probe.with_name(f".{run.probe.name}.tmp")
            shutil.copyfile(probe, partial)
            os.replace(partial, run.probe)
        shutil.rmtree(probe.parent, ignore_errors=True)
    accelerator.wait_for_everyone()  # the run folder exists before any process writes into it
    trainable, total = count_parameters(model)
    pad_id = p.tokenizer.pad_token_id or 0
    train_features, val_features = p.train_features, p.val_features
    console.print(
        f"[bold]{p.task.name}[/] with [bold]{p.method.name}[/] on {config.model.name}: "
        f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%); "
        f"{len(p.splits.train)} train / {len(p.splits.validation)} validation / {len(p.splits.test)} test; "
        f"device {accelerator.device}, lr {cfg.learning_rate:g}"
    )
    for note in p.splits.notes:
        console.print(f"[dim]{note}[/]")

    def save_best(trained: torch.nn.Module, weights: dict[str, torch.Tensor] | None) -> None:
        def write(folder: Path) -> None:
            p.method.save(trained, folder, weights)
            p.tokenizer.save_pretrained(folder)
            (folder / "tunesmith.json").write_text(f'{{"method": "{p.method.name}"}}\n', encoding="utf-8")

        run.replace_model(write)

    stop = StopSignals()
    loop = TrainLoop(
        p.task,
        model,
        train_features,
        val_features,
        cfg,
        run.root,
        save_best,
        pad_id,
        console,
        accelerator,
        on_step or [],
        p.method,
        on_validation or [],
        sharded,
        start_competes=cfg.keep == "better" and start is not None,
        restart=restart,
        stop=stop,
    )
    started = time.perf_counter()
    with stop:  # SIGTERM and a first Ctrl-C: a checkpoint at the step in hand, then errors.Interrupted
        result = loop.run(resume=resume)
    summary = {
        "task": p.task.name,
        "method": p.method.name,
        "model": config.model.name,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "examples": {
            "train": len(p.splits.train),
            "validation": len(p.splits.validation),
            "test": len(p.splits.test),
        },
        "optimizer_steps": result.state.step,
        "best_step": result.state.best_step,
        f"best_validation_{cfg.metric}": result.state.best,
        f"base_validation_{cfg.metric}": result.state.start,
        "best_tuned_validation": result.state.tuned_best,
        "best_tuned_beats_base_share": result.state.tuned_best_share,
        "holds": start if result.state.start is not None and result.state.best_step == 0 else "tuned",
        "stopped_early": result.state.stopped_early,
        "train_seconds": round(time.perf_counter() - started, 2),
        "train_step_seconds": round(result.step_seconds, 2),
        "train_samples_per_second": round(result.samples_per_second, 2),
        "train_tokens_per_second": round(
            result.samples_per_second
            * sum(f["length"] for f in train_features)
            / max(len(train_features), 1),
            1,
        ),
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        **measured_peak(accelerator.device),
        "estimate": cost.as_json() if cost is not None else None,
    }
    trained_model = loop.trained_model
    loop.release()  # the optimizer's state is not needed any more: room for the evaluation's models
    if not main:
        return FinetuneResult(run.root, summary, None, trained_model)
    run.write_json(run.summary, summary)
    if summary["holds"] != "tuned":  # said first, in plain words
        what = "the base model" if summary["holds"] == "base" else f"the model of {cfg.init_from}"
        console.print(f"[bold yellow]{not_kept_line(result.state, what, cfg)}[/]")
    report = None
    if p.splits.test and final_evaluation:
        from tunesmith.inference import load_run

        base_evaluation = p.task.evaluate_baseline(p.resolved, p.splits.test, run.probe)
        base_general = None
        if config.evaluation.forgetting:
            base_general = base_general_ability(p.task, p.resolved, accelerator.device)
        trained = load_run(run.root, device=str(accelerator.device))
        report = evaluate_examples(trained, p.splits.test, base_evaluation, base_general)
        run.write_json(run.eval, report)
    return FinetuneResult(run.root, summary, report, trained_model)


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
                len(features),
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


def start_from_run(model: torch.nn.Module, folder: Path, p: Prepared) -> None:
    """train.init_from: copy the weights a finished run trained into `model` (the same model, task, labels
    and method, so every trainable tensor has its counterpart)."""
    from tunesmith.inference import read_run

    spec = read_run(folder)
    ours = (p.config.model.name, p.task.name, p.method.name)
    theirs = (spec.config.model.name, spec.task.name, spec.method.name)
    if ours != theirs or spec.task.state() != p.task.state():
        raise ConfigError(
            f"train.init_from: {folder} trained {'/'.join(theirs)} with other labels or settings than this "
            f"{'/'.join(ours)} run; start from the base model instead (leave train.init_from empty)"
        )
    trained = spec.method.load(spec.run.model, spec.base_loader("cpu")).state_dict()
    wanted = [name for name, q in model.named_parameters() if q.requires_grad]
    missing = [name for name in wanted if name not in trained]
    if missing:
        raise ConfigError(f"train.init_from: {folder} has no weights for {', '.join(missing[:3])}")
    model.load_state_dict({name: trained[name] for name in wanted}, strict=False)


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def measured_peak(device: torch.device) -> dict[str, Any]:
    """The training's peak memory as measured: torch's allocator on a GPU; on the CPU the process's peak
    resident memory (which includes anything else this process did before)."""
    if device.type == "cuda":
        return {
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
            "peak_memory_of": "cuda allocator",
        }
    return {"peak_memory_bytes": peak_resident_bytes(), "peak_memory_of": "process resident memory"}


def base_general_ability(task: Task, resolved: ResolvedModel, device: torch.device) -> GeneralAbility | None:
    """The untuned base model's scores on the general reference (loaded for this, then freed)."""
    model = task.load_model(resolved).to(device)
    try:
        return task.general_ability(model)
    finally:
        del model


def not_kept_line(state: LoopState, what: str, cfg: TrainConfig) -> str:
    """Why the run holds its start model, in plain words."""
    best, start, share = state.tuned_best, state.start, state.tuned_best_share
    keeps = f"the run keeps {what} (train.keep=better). train.keep=tuned keeps the fine-tuned weights instead"
    if (
        best is not None
        and start is not None
        and share is not None
        and best != start
        and ((best > start) == greater_is_better(cfg.metric))
    ):
        return (
            f"fine-tuning did not clearly beat {what} on validation: the best checkpoint's {cfg.metric} "
            f"{best:.4f} is above its {start:.4f} on this split, but in only {share:.0%} of bootstrap "
            f"resamples of it (train.keep_confidence={cfg.keep_confidence:g}); {keeps}"
        )
    return (
        f"fine-tuning did not beat {what} on validation ({cfg.metric}: {start:.4f}, best fine-tuned checkpoint "
        f"{_shown(best)}): {keeps}"
    )


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """transformers' activation checkpointing on the model's layers (non-reentrant, so frozen embeddings under
    an adapter need no input-gradient hooks)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise UserError(f"{type(base).__name__} does not support train.gradient_checkpointing")
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _precision(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return {"fp32": "no"}.get(name, name)
