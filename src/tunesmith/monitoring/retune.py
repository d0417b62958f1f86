"""`tunesmith retune RUN`: a new version from the serving version's data plus what the server learnt.

1. Data: the serving version's own train/validation/test splits; corrections sent to /v1/feedback (the
   latest per request) join the training split (a correction of a text already there replaces its label),
   and so do extra labelled files (e.g. the sample `monitor --sample-to-label` wrote, once labelled).
   Validation and test stay as they were: a correction whose text is in them is left out (it would leak).
   The files are written to RUN/versions/vN-data/ in the task's own format.
2. The data gate and the fine-tuning run as for `tunesmith train`, into RUN/versions/vN (a run folder).
3. The new and the serving version answer the same test examples; the paired bootstrap gives the interval of
   the difference on train.metric; `retune.promote` decides (if_not_worse by default, with
   `retune.tolerance`), and promotion rewrites RUN/serving.json, which a running server picks up.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from tunesmith.config import RunConfig, build_config
from tunesmith.data.readers import FileFormat
from tunesmith.errors import UserError
from tunesmith.evaluation.bootstrap import paired_intervals
from tunesmith.evaluation.metrics import greater_is_better
from tunesmith.files import write_json_atomic
from tunesmith.inference import TrainedRun, load_run
from tunesmith.monitoring.feedback_records import preference_records, split_records
from tunesmith.monitoring.request_log import RequestLog, default_url
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.prepare import load_splits
from tunesmith.tasks import build_task
from tunesmith.tasks.preference.task import PreferenceParams
from tunesmith.tracking.run_tracking import record_serving
from tunesmith.versions import Deployment


@dataclass
class RetuneResult:
    version: str
    folder: Path
    decision: dict[str, Any]

    def print(self, console: Console) -> None:
        """New vs serving on the same test examples, with the interval of the difference, and the verdict."""
        decision = self.decision
        c = decision["comparison"]
        interval = c.get("interval")
        shown = f" [{interval['low']:+.4f}, {interval['high']:+.4f}]" if interval else ""
        console.print(
            f"{self.version} vs {decision['from']} on the same {decision['data']['test_examples']} test "
            f"examples: {c['metric']} {c['candidate']:.4f} vs {c['serving']:.4f} "
            f"({c['candidate'] - c['serving']:+.4f}{shown})"
        )
        verdict = "[green]promoted[/]" if decision["promoted"] else "[yellow]not promoted[/]"
        console.print(f"{verdict}: {escape(decision['reason'])}")


def retune_data(
    trained: TrainedRun, corrections: list[dict[str, Any]], extra: list[Path], out: Path, weight: int
) -> dict[str, Any]:
    """Write train/validation/test JSONL for the new version; returns counts and what was left out."""
    task = trained.task
    splits = load_splits(task, trained.config)
    if not splits.test:
        raise UserError(
            "retune compares the new version with the serving one on the test split, and this run has none: "
            "retrain it with data.test or data.test_fraction"
        )
    held_out = {task.view(ex).input.strip() for ex in [*splits.validation, *splits.test]}
    new_records: dict[str, dict[str, Any]] = {}
    leaked = 0
    for row in corrections:
        record = task.corrected_record(
            row["input"], row["correct_label"], row["correct_answer"], row.get("output")
        )
        text = task.traffic_text(row["input"]).strip()
        if record is None:
            continue
        if text in held_out:
            leaked += 1
            continue
        new_records[text] = record
    extra_examples = [ex for path in extra for ex in task.read(path, "auto")]
    for ex in extra_examples:
        new_records[task.view(ex).input.strip()] = task.record(ex)
    train = [task.record(ex) for ex in splits.train if task.view(ex).input.strip() not in new_records]
    replaced = len(splits.train) - len(train)
    train += [record for record in new_records.values() for _ in range(weight)]
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, records in (
        ("train", train),
        ("validation", [task.record(ex) for ex in splits.validation]),
        ("test", [task.record(ex) for ex in splits.test]),
    ):
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        files[split] = path
    return {
        "files": files,
        "corrections": len(corrections),
        "corrections_used": len(new_records) - len(extra_examples),
        "corrections_in_held_out": leaked,
        "extra_examples": len(extra_examples),
        "replaced_training_examples": replaced,
        "train_examples": len(train),
        "test_examples": len(splits.test),
        "test": splits.test,
    }


def new_version_config(
    serving: RunConfig, files: dict[str, Path], out: Path, overrides: list[str], task: Any
) -> RunConfig:
    tree = serving.model_dump(mode="json")
    tree["data"].update(
        train=str(files["train"]),
        validation=str(files["validation"]) if files["validation"].stat().st_size else None,
        test=str(files["test"]) if files["test"].stat().st_size else None,
        format="jsonl",
        validation_fraction=0.0,  # the splits are the files: nothing more is split off the training data
        test_fraction=0.0,
    )
    tree["task"].update(task.record_params)
    tree["train"]["init_from"] = None  # retune decides (retune.start), not the serving version's own start
    tree["output_dir"] = str(out)
    return build_config(tree, overrides)


JUDGED_ON = {"dpo": "reward_margin", "kto": "loss"}
"""What decides a preference version's promotion, both versions scored against the base model as reference:
dpo, the mean reward margin of the held-out pairs (how much more than the base the version prefers the better
answer; per pair, so with its paired interval); kto, its loss. Not preference accuracy (summed likelihoods):
the rejected answer is the model's own greedy one, short and likely, and outscored every correction of a
SmolLM2 chat run before and after tuning (tests/e2e/test_preference_retune.py), so it could not tell them
apart."""


def _supervised_version(
    serving: TrainedRun,
    corrections: list[dict[str, Any]],
    extra: list[Path] | None,
    data_folder: Path,
    folder: Path,
    overrides: list[str] | None,
    console: Console,
) -> tuple[RunConfig, dict[str, Any]]:
    """The serving task's own data plus the corrections, and the config that trains on it."""
    data = retune_data(
        serving, corrections, list(extra or []), data_folder, serving.config.retune.correction_weight
    )
    left_out = data["corrections_in_held_out"]
    console.print(
        f"{folder.name} from {serving.run.root.name}: {data['corrections_used']} corrections"
        + (f" ({left_out} left out: their texts are in validation/test)" if left_out else "")
        + f", {data['extra_examples']} extra examples, {data['train_examples']} training examples"
    )
    return new_version_config(serving.config, data["files"], folder, overrides or [], serving.task), data


def _preference_version(
    serving: TrainedRun,
    feedback: list[dict[str, Any]],
    extra: list[Path] | None,
    data_folder: Path,
    folder: Path,
    overrides: list[str] | None,
    objective: str,
) -> tuple[RunConfig, dict[str, Any]]:
    """Preference records from the feedback (plus --extra JSONL files of the same records), split into train
    and held-out test by request, and the config that tunes the serving version on them."""
    if not serving.task.converses:
        raise UserError(
            f"retune --objective {objective} learns which chat answers people prefer, and this run serves a "
            f"{serving.task.name} model; use --objective sft (corrections as training examples)"
        )
    train, test = split_records(
        preference_records(feedback, objective), serving.config.retune.test_fraction, objective
    )
    extra_lines = [
        line for path in extra or [] for line in Path(path).read_text("utf-8").splitlines() if line
    ]
    data_folder.mkdir(parents=True, exist_ok=True)
    files = {"train": data_folder / "train.jsonl", "test": data_folder / "test.jsonl"}
    files["train"].write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train)
        + "".join(x + "\n" for x in extra_lines),
        encoding="utf-8",
    )
    files["test"].write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in test), encoding="utf-8"
    )
    tree = serving.config.model_dump(mode="json")
    shared = PreferenceParams.model_fields.keys() - {"name", "format", "packing", "loss", "loss_params"}
    tree["task"] = {k: v for k, v in tree["task"].items() if k in shared} | {
        "name": "preference",
        "loss": objective,
    }
    tree["data"].update(
        train=str(files["train"]),
        validation=None,
        test=str(files["test"]),
        format="jsonl",
        validation_fraction=0.0,
        test_fraction=0.0,
    )
    tree["train"].update(metric=None, init_from=None, learning_rate=None)
    tree["output_dir"] = str(folder)
    counts = {"train_examples": len(train) + len(extra_lines), "test_examples": len(test)}
    return build_config(tree, overrides or []), {"files": files, **counts, "extra_examples": len(extra_lines)}


def _task_state(config: RunConfig, tokenizer: Any) -> dict[str, Any]:
    """What the task learns from the new version's training data (its labels), read without a model."""
    task = build_task(config.task, config.model)
    task.use_tokenizer(tokenizer)
    train = task.read(config.data.train, FileFormat(config.data.format, config.data.delimiter))
    task.fit(train, {})
    return task.state()


def compare_versions(
    candidate: TrainedRun,
    serving: TrainedRun,
    examples: list[Any],
    metric: str,
    resamples: int,
    seed: int,
    judge: Any = None,
) -> dict[str, Any]:
    """Both versions on the same test examples: their metric and the paired 95% interval of the difference.
    Each version's own task scores it, or `judge` scores both (a preference version against a chat one)."""
    scores = {}
    resamplers = {}
    for name, trained in (("candidate", candidate), ("serving", serving)):
        task = judge or trained.task
        features = task.encode(examples, trained.tokenizer)
        evaluation = task.evaluate(
            trained.model, features, trained.config.train.eval_batch_size, trained.pad_id
        )
        if metric not in evaluation.metrics:
            raise UserError(
                f"the test evaluation has no {metric!r}; set train.metric to one of {sorted(evaluation.metrics)}"
            )
        scores[name] = evaluation.metrics
        resamplers[name] = task.resampler(features, evaluation)
    out: dict[str, Any] = {
        "metric": metric,
        "candidate": scores["candidate"][metric],
        "serving": scores["serving"][metric],
        "greater_is_better": greater_is_better(metric),
        "candidate_metrics": scores["candidate"],
        "serving_metrics": scores["serving"],
    }
    if resamples and resamplers["candidate"] and resamplers["serving"]:
        intervals = paired_intervals(
            resamplers["candidate"], resamplers["serving"], len(examples), resamples=resamples, seed=seed
        )
        if metric in intervals:
            out["interval"] = intervals[metric].as_json()
    return out


def decide(comparison: dict[str, Any], rule: str, tolerance: float) -> tuple[bool, str]:
    gain = comparison["candidate"] - comparison["serving"]
    if not comparison["greater_is_better"]:
        gain = -gain
    if rule == "always":
        return True, "retune.promote is always"
    if rule == "never":
        return False, "retune.promote is never (promote by hand: tunesmith rollback RUN --to VERSION)"
    if gain >= -tolerance:
        return (
            True,
            f"not worse: {comparison['metric']} {comparison['candidate']:.4f} vs {comparison['serving']:.4f}",
        )
    return False, (
        f"worse: {comparison['metric']} {comparison['candidate']:.4f} vs {comparison['serving']:.4f} "
        f"(tolerance {tolerance:g}); the serving version stays"
    )


def logged_corrections(deployment: Deployment, log_url: str | None) -> list[dict[str, Any]]:
    """The corrections sent to /v1/feedback for this run's requests, from its request log."""
    log = RequestLog(log_url or default_url(deployment.root))
    try:
        return log.corrections(deployment.root)
    finally:
        log.close()


def _new_version(
    serving: TrainedRun,
    deployment: Deployment,
    objective: str,
    corrections: list[dict[str, Any]],
    extra: list[Path] | None,
    overrides: list[str] | None,
    console: Console,
) -> tuple[RunConfig, dict[str, Any], str]:
    """The new version's data and config, where it starts, and the metric that will judge it."""
    serving_folder = deployment.folder(deployment.current())
    version = deployment.next_version()
    folder = deployment.versions_dir / version
    data_folder = deployment.versions_dir / f"{version}-data"
    shutil.rmtree(data_folder, ignore_errors=True)
    if objective != "sft":
        config, data = _preference_version(
            serving, corrections, extra, data_folder, folder, overrides, objective
        )
        console.print(
            f"{version} from {deployment.current()}: {objective} on {data['train_examples']} records from "
            f"feedback, judged on {data['test_examples']} held out"
        )
        config.train.init_from = serving_folder  # it refines what serves
        return config, data, JUDGED_ON[objective]
    config, data = _supervised_version(serving, corrections, extra, data_folder, folder, overrides, console)
    if config.retune.start == "serving" and serving.task.state() != _task_state(config, serving.tokenizer):
        console.print("the new version's labels differ from the serving version's: it starts from the base")
    elif config.retune.start == "serving":
        config.train.init_from = serving_folder
    return config, data, config.train.metric


def retune(
    run: Path,
    console: Console,
    *,
    feedback: bool = True,
    extra: list[Path] | None = None,
    overrides: list[str] | None = None,
    log_url: str | None = None,
) -> RetuneResult:
    deployment = Deployment(run)
    serving_version = deployment.current()
    serving = load_run(deployment.folder(serving_version))
    retune_overrides = [o for o in overrides or [] if o.startswith("retune.")]  # the rest are the new run's
    objective = build_config(serving.config.model_dump(mode="json"), retune_overrides).retune.objective
    corrections = logged_corrections(deployment, log_url) if feedback else []
    if objective == "sft":
        corrections = [
            r for r in corrections if r["correct_label"] is not None or r["correct_answer"] is not None
        ]
    if not corrections and not extra:
        raise UserError(
            f"nothing to learn from: no corrections logged for {deployment.root.name} and no --extra file"
        )
    version = deployment.next_version()
    folder = deployment.versions_dir / version
    config, data, metric = _new_version(
        serving, deployment, objective, corrections, extra, overrides, console
    )
    candidate = load_run(finetune(config, console).run)
    judge = None
    if objective != "sft":  # both versions scored as preference models, on the held-out records
        judge = candidate.task
        data["test"] = judge.read(data["files"]["test"], "jsonl")
    comparison = compare_versions(
        candidate,
        serving,
        data["test"],
        metric,
        config.evaluation.bootstrap_resamples,
        config.train.seed,
        judge,
    )
    cfg = config
    promote, reason = decide(comparison, cfg.retune.promote, cfg.retune.tolerance)
    decision = {
        "version": version,
        "from": serving_version,
        "data": {k: v for k, v in data.items() if k not in ("files", "test")},
        "comparison": comparison,
        "promoted": promote,
        "reason": reason,
    }
    write_json_atomic(folder / "retune.json", decision)
    if promote:
        deployment.serve(version, reason=f"retune: {reason}")
        for line in record_serving(
            deployment, lambda text: console.print(f"tunesmith: {text}", markup=False)
        ):
            console.print(f"[dim]{line}[/]", highlight=False)
    return RetuneResult(version, folder, decision)
