"""Fine-tune: read and check the data, build the model and method, train, evaluate tuned vs base.

`finetune` runs named stages in order; each is one step of the journey and says what it leaves behind.
Everything that can fail on bad input (config, data files, labels, model name, memory budget) runs before the
run folder is created or touched, so a mistake never costs earlier results.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from rich.console import Console

from tunesmith.config import RunConfig, dump_config
from tunesmith.data.checks.render import print_report
from tunesmith.errors import ConfigError, Interrupted, UserError
from tunesmith.inference import load_run, read_run
from tunesmith.methods import count_parameters
from tunesmith.planning.estimate import Estimate, ShardedShare, worth_estimating
from tunesmith.planning.memory import parse_budget
from tunesmith.recipes.evaluate import base_general_ability, evaluate_examples
from tunesmith.recipes.plan import cheaper_methods, estimate_for
from tunesmith.recipes.prepare import Prepared, absolute_data_paths, prepare
from tunesmith.recipes.summary import Facts, measured_peak, not_kept_line, summarise
from tunesmith.reporting.run_report import write_report
from tunesmith.runs import RunFolder, writing
from tunesmith.tracking.run_tracking import RunTracking, tracker_classes
from tunesmith.training.checkpoint import latest_checkpoint
from tunesmith.training.distributed import check_strategy, is_main_process
from tunesmith.training.interrupt import StopSignals
from tunesmith.training.loop import LoopResult, TrainLoop, total_steps
from tunesmith.training.setup import build_model, mixed_precision, precision_warning, training_device
from tunesmith.units import human


@dataclass
class FinetuneResult:
    run: Path
    summary: dict[str, Any]
    evaluation: dict[str, Any] | None
    model: torch.nn.Module
    """The model as it stands at the end of training (the best one is in run/model)."""


@dataclass
class Built:
    """The model training starts from, and what the stages after need to know about it."""

    model: torch.nn.Module
    steps: int
    sharded: bool
    """FSDP over more than one process: each holds shards, never the whole model."""
    start: str | None
    """"base" or "start" (train.init_from's run) when the step-0 model competes with the checkpoints."""
    restart: dict[str, torch.Tensor] | None
    """The fresh head training restarts from once step 0 has validated the start model (task.training_head)."""
    cost: Estimate | ShardedShare | None = None


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
    writers meanwhile (runs.writing; by the main process of a distributed run, the one that writes); the
    other processes of a distributed run compute the same and print nothing."""
    if config.output_dir is None:
        raise ConfigError("no run folder: give --out FOLDER or output_dir in the config")
    tracker_classes(config.train)  # an unknown or uninstalled tracker is refused before anything is written
    main = is_main_process()
    with writing(config.output_dir) if main else nullcontext():
        config = absolute_data_paths(config)
        run = open_run(config, resume)
        console = console if main else Console(file=io.StringIO())
        p = prepare(config)
        if not resume and main:
            run.check_creatable(overwrite)
        print_report(console, p.report)
        accelerator = start_accelerator(config)
        if (warning := precision_warning(config.train.precision, accelerator.device)) is not None:
            console.print(f"tunesmith: {warning}", style="yellow", markup=False, highlight=False)
        probe = fit_base(p, run, resume, console)
        built = build(p, run, accelerator, resume, probe, console)
        refuse_over_budget(p, built, probe)
        write_run_files(p, run, resume, overwrite, probe)
        accelerator.wait_for_everyone()  # the run folder exists before any process writes into it
        with tracked(p, run, resume, console) as tracking:
            result, model, facts = train(
                p, run, built, accelerator, console, resume, on_step, on_validation, tracking
            )
            summary = summarise(facts, result, config.train.metric)
            if not main:
                return FinetuneResult(run.root, summary, None, model)
            run.write_json(run.summary, summary)
            tracking.trained(summary)
            if summary["holds"] != "tuned":  # said first, in plain words
                what = (
                    "the base model"
                    if summary["holds"] == "base"
                    else f"the model of {config.train.init_from}"
                )
                console.print(f"[bold yellow]{not_kept_line(result.state, what, config.train)}[/]")
            report = evaluate_run(p, run, accelerator.device) if p.splits.test and final_evaluation else None
            send_results(tracking, run, report, summary)
            return FinetuneResult(run.root, summary, report, model)


def open_run(config: RunConfig, resume: bool) -> RunFolder:
    """The run folder, as a resume finds it (a model half-replaced when the run stopped is put back); a new
    run's folder is only created once every check has passed (write_run_files)."""
    assert config.output_dir is not None
    run = RunFolder(config.output_dir)
    if resume:
        if not run.is_run():
            raise UserError(f"nothing to resume: {run.root} is not a run folder")
        if run.summary.is_file() and run.eval.is_file():  # a run stopped before its test evaluation resumes
            raise UserError(f"{run.root} finished already; nothing to resume")
        if is_main_process():
            run.recover_model()
    return run


def start_accelerator(config: RunConfig) -> Accelerator:
    """Threads, device, mixed precision and the process group; the seed set for what follows."""
    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # cpu=True also where no GPU exists: accelerate only sets up a multi-process CPU run (gloo) when told so
    device = training_device(config)
    on_cpu = device.type == "cpu"
    precision = mixed_precision(cfg.precision, device)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != precision and not torch.distributed.is_initialized():
        # accelerate keeps one state per process and refuses another precision; a process that trains more
        # than once (tune's trials, the studio, a test session) may change it between runs
        AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=on_cpu, mixed_precision=precision)
    if accelerator.num_processes > 1:
        check_strategy(config)
    set_seed(cfg.seed)
    return accelerator


def fit_base(p: Prepared, run: RunFolder, resume: bool, console: Console) -> Path | None:
    """The base model's baseline (a classifier's probe), fitted into a temporary folder before the model loads
    (its base model is gone by then), in every process: the head may start from it, and the fit is
    deterministic, so every process starts from the same weights. None: a resumed run has it already."""
    if resume and run.probe.is_file():
        return None
    seed = p.config.train.seed
    probe = Path(tempfile.mkdtemp(prefix="tunesmith-probe-")) / run.probe.name
    with console.status("fitting the base-model baseline"):
        said = p.task.fit_baseline(p.resolved, p.splits.train, probe, seed)
    if said:
        console.print(said)
    set_seed(seed)  # the training starts from the same random state with or without it
    return probe


def build(
    p: Prepared, run: RunFolder, accelerator: Accelerator, resume: bool, probe: Path | None, console: Console
) -> Built:
    """The trainable model, where it starts (the probe's head, train.init_from's weights, or a checkpoint's,
    which the loop loads), and what it will cost (printed by the main process)."""
    cfg = p.config.train
    steps = total_steps(len(p.train_features), cfg)
    sharded = p.config.distributed.strategy == "fsdp" and accelerator.num_processes > 1
    head = probe if probe is not None else run.probe
    model, starts_as_base = build_model(
        p.task,
        p.resolved,
        p.method,
        cfg,
        accelerator.device,
        steps,
        head=head if head.is_file() else None,  # a resumed run's checkpoint, if any, replaces the head again
        sharded=sharded,
    )
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
    built = Built(model, steps, sharded, start, restart)
    if (
        is_main_process()
    ):  # measured once; another process stopping on its own reading would leave the rest waiting
        built.cost = estimate_cost(p, built, accelerator, console)
    return built


def estimate_cost(
    p: Prepared, built: Built, accelerator: Accelerator, console: Console
) -> Estimate | ShardedShare | None:
    """The run's memory and time, measured on its own model and examples (or, sharded, each process's share
    of the weights), printed; None where train.estimate skips it."""
    cfg = p.config.train
    if built.sharded:
        cost: Estimate | ShardedShare = ShardedShare.of(built.model, p.method.name, accelerator.num_processes)
    elif worth_estimating(cfg, built.steps):
        with accelerator.autocast():
            cost = estimate_for(p, built.model, p.method, cfg)
    else:
        console.print(
            f"[dim]estimate: skipped for a {built.steps}-step run (train.estimate={cfg.estimate}; "
            f"train.estimate=always measures it)[/]"
        )
        return None
    console.print(f"[dim]estimate: {cost.line()}[/]")
    return cost


def refuse_over_budget(p: Prepared, built: Built, probe: Path | None) -> None:
    """A run whose estimate is over train.memory_budget stops here, before its folder exists, naming a
    cheaper method that fits (each measured in a fresh process, with this one's model freed first)."""
    budget, cost = parse_budget(p.config.train.memory_budget), built.cost
    if cost is None or budget is None or cost.peak_bytes <= budget:
        return
    built.model = None  # type: ignore[assignment]
    if probe is not None:
        shutil.rmtree(probe.parent, ignore_errors=True)
    raise ConfigError(
        f"this {p.method.name} run needs {'at least' if built.sharded else '≈'} {human(cost.peak_bytes)} at its "
        f"peak, over train.memory_budget={p.config.train.memory_budget}; "
        f"{cheaper_methods(p, p.method.name, budget)}"
    )


def write_run_files(p: Prepared, run: RunFolder, resume: bool, overwrite: bool, probe: Path | None) -> None:
    """By the main process: a new run's folder, config and task state; the data check; the probe moved in
    (copied aside, then renamed: a kill never leaves half a probe). Every process drops its own probe copy."""
    main = is_main_process()
    if main:
        if not resume:
            run.create(overwrite)
            run.config.write_text(dump_config(p.config), encoding="utf-8")
            run.write_json(run.task, p.task.state())
        run.write_json(run.data_check, p.report.to_dict())
    if probe is not None:
        if main and probe.is_file():
            partial = run.probe.with_name(f".{run.probe.name}.tmp")
            shutil.copyfile(probe, partial)
            os.replace(partial, run.probe)
        shutil.rmtree(probe.parent, ignore_errors=True)


@contextmanager
def tracked(p: Prepared, run: RunFolder, resume: bool, console: Console) -> Iterator[RunTracking]:
    """The run's trackers (train.report_to; the main process sends), told the data check first and how the
    run ended last: finished, interrupted (a signal; it resumes into the same tracked run) or failed."""

    def warn(text: str) -> None:
        console.print(f"tunesmith: {text}", style="yellow", markup=False, highlight=False)

    tracking = RunTracking(run.root, p.config, resume, warn, active=is_main_process())
    tracking.data_checked(p.report.to_dict())
    tracking.ready()
    status = "failed"
    try:
        yield tracking
        status = "finished"
    except Interrupted:
        status = "interrupted"
        raise
    finally:
        tracking.close(status)


def send_results(
    tracking: RunTracking, run: RunFolder, report: dict[str, Any] | None, summary: dict[str, Any]
) -> None:
    """Base vs tuned and forgetting by the trackers' last step; the run's files, the HTML report (written to
    RUN/report.html, as `tunesmith report` does) and the model among them."""
    if not tracking.active:
        return
    if report is not None:
        tracking.evaluated(report, summary["optimizer_steps"])
    page = write_report(run.root)
    tracking.files([run.config, run.summary, run.eval, run.data_check, page, run.model])


def train(
    p: Prepared,
    run: RunFolder,
    built: Built,
    accelerator: Accelerator,
    console: Console,
    resume: bool,
    on_step: list[Any] | None,
    on_validation: list[Any] | None,
    tracking: RunTracking,
) -> tuple[LoopResult, torch.nn.Module, Facts]:
    """The training loop, with validation, the best model kept in run/model and checkpoints; SIGTERM and a
    first Ctrl-C checkpoint the step in hand, then raise errors.Interrupted. Returns the loop's result, the
    model as training left it, and the facts the summary needs."""
    cfg = p.config.train
    trainable, total = count_parameters(built.model)
    print_start(p, console, trainable, total, accelerator.device)
    stop = StopSignals()
    loop = TrainLoop(
        task=p.task,
        model=built.model,
        train_features=p.train_features,
        val_features=p.val_features,
        cfg=cfg,
        run_dir=run.root,
        save_best=best_model_writer(p, run),
        pad_id=p.tokenizer.pad_token_id or 0,
        console=console,
        accelerator=accelerator,
        on_step=on_step or [],
        method=p.method,
        on_validation=on_validation or [],
        sharded=built.sharded,
        start_competes=cfg.keep == "better" and built.start is not None,
        restart=built.restart,
        stop=stop,
        on_record=[tracking.record],
    )
    started = time.perf_counter()
    with stop:
        result = loop.run(resume=resume)
    seconds = time.perf_counter() - started
    model = loop.final_model()
    loop.release()  # the optimizer's state is not needed any more: room for the evaluation's models
    return result, model, facts_of(p, built, accelerator, (trainable, total), seconds)


def facts_of(
    p: Prepared, built: Built, accelerator: Accelerator, parameters: tuple[int, int], seconds: float
) -> Facts:
    """What the summary says beside the loop's result: the run's shape, where and how long it trained,
    its measured peak memory and its estimate."""
    return Facts(
        task=p.task.name,
        method=p.method.name,
        model=p.config.model.name,
        examples={name: len(getattr(p.splits, name)) for name in ("train", "validation", "test")},
        trainable_parameters=parameters[0],
        total_parameters=parameters[1],
        start=built.start,
        mean_length=sum(f["length"] for f in p.train_features) / max(len(p.train_features), 1),
        device=str(accelerator.device),
        processes=accelerator.num_processes,
        seconds=seconds,
        peak=measured_peak(accelerator.device),
        estimate=built.cost.as_json() if built.cost is not None else None,
    )


def print_start(p: Prepared, console: Console, trainable: int, total: int, device: torch.device) -> None:
    """One line on what trains: task, method, model, trainable share, split sizes, device, learning rate."""
    console.print(
        f"[bold]{p.task.name}[/] with [bold]{p.method.name}[/] on {p.config.model.name}: "
        f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%); "
        f"{len(p.splits.train)} train / {len(p.splits.validation)} validation / {len(p.splits.test)} test; "
        f"device {device}, lr {p.config.train.learning_rate:g}"
    )
    for note in p.splits.notes:
        console.print(f"[dim]{note}[/]")


def best_model_writer(
    p: Prepared, run: RunFolder
) -> Callable[[torch.nn.Module, dict[str, torch.Tensor] | None], None]:
    """What the loop calls with a new best model (and, sharded, its gathered weights): run/model replaced as
    one step (the method's weights, the tokenizer, which method wrote them)."""

    def save_best(trained: torch.nn.Module, weights: dict[str, torch.Tensor] | None) -> None:
        def write(folder: Path) -> None:
            p.method.save(trained, folder, weights)
            p.tokenizer.save_pretrained(folder)
            record: dict[str, Any] = {"method": p.method.name}
            if (state := p.task.model_state()) is not None:
                record["task"] = state
            (folder / "tunesmith.json").write_text(json.dumps(record) + "\n", encoding="utf-8")

        run.replace_model(write)

    return save_best


def evaluate_run(p: Prepared, run: RunFolder, device: torch.device) -> dict[str, Any]:
    """Base vs the model the run holds, on the test split, forgetting included; written to run/eval.json.
    The base model is measured first, before the tuned model loads: one model less in memory."""
    base_evaluation = p.task.evaluate_baseline(p.resolved, p.splits.test, run.probe)
    base_general = None
    if p.config.evaluation.forgetting:
        base_general = base_general_ability(p.task, p.resolved, device)
    trained = load_run(run.root, device=str(device))
    report = evaluate_examples(trained, p.splits.test, base_evaluation, base_general)
    run.write_json(run.eval, report)
    return report


def start_from_run(model: torch.nn.Module, folder: Path, p: Prepared) -> None:
    """train.init_from: copy the weights a finished run trained into `model` (the same model, task, labels
    and method, so every trainable tensor has its counterpart)."""
    spec = read_run(folder)
    ours = (p.config.model.name, p.task.base_model_key(), p.method.name)
    theirs = (spec.config.model.name, spec.task.base_model_key(), spec.method.name)
    saved = spec.run.read_json(spec.run.task)  # the state it trained with (its task here has no tokenizer)
    if ours != theirs or saved != json.loads(json.dumps(p.task.state())):
        raise ConfigError(
            f"train.init_from: {folder} trained {spec.config.model.name}/{spec.task.name}/{spec.method.name} "
            f"with other labels or settings than this {p.config.model.name}/{p.task.name}/{p.method.name} run; "
            "start from the base model instead (leave train.init_from empty)"
        )
    trained = spec.method.load(spec.run.model, spec.base_loader("cpu")).state_dict()
    wanted = [name for name, q in model.named_parameters() if q.requires_grad]
    missing = [name for name in wanted if name not in trained]
    if missing:
        raise ConfigError(f"train.init_from: {folder} has no weights for {', '.join(missing[:3])}")
    model.load_state_dict({name: trained[name] for name in wanted}, strict=False)
