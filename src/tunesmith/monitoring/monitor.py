"""`tunesmith monitor RUN`: the drift report over what the server logged for a run.

The reference is data the serving version was checked on but not trained on (its validation and test splits,
topped up from the training data when those are small): the model's embeddings of its own training texts
are tighter than of anything new, so comparing traffic with training texts would cry drift at once.
Embeddings are the serving model's own (mean of its last hidden layer). The report goes to RUN/drift.json
(read by /metrics and `tunesmith report`) and is appended to RUN/drift_history.jsonl.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.files import write_json_atomic
from tunesmith.inference import TrainedRun, load_run
from tunesmith.models.running import evaluating
from tunesmith.monitoring import drift
from tunesmith.monitoring.request_log import RequestLog, default_url
from tunesmith.recipes.prepare import load_splits
from tunesmith.sections import MonitorConfig
from tunesmith.versions import Deployment

SMALL_REFERENCE = 100
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """`7d`, `12h`, `30m`, `90s`, `2w` before now, or an ISO date/time; None for everything logged."""
    if not text:
        return None
    now = time.time() if now is None else now
    match = _SPAN.match(text.strip())
    if match:
        return now - float(match.group(1)) * _SECONDS[match.group(2)]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UserError(f"--since {text!r}: give a span (7d, 12h, 30m) or an ISO date (2026-11-01)") from None


@dataclass
class Encoded:
    embeddings: np.ndarray
    lengths: list[int]


def encode_texts(trained: TrainedRun, texts: list[str], batch_size: int = 32) -> Encoded:
    """The serving model's sentence embeddings (mean of the last hidden layer over real tokens) and token
    lengths, in one pass."""
    tokenizer, max_length = trained.tokenizer, trained.config.model.max_length
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    embeddings: list[Any] = [None] * len(texts)
    lengths = [0] * len(texts)
    with evaluating(trained.model) as device:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            out = trained.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states[-1].float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = ((hidden * weights).sum(1) / weights.sum(1).clamp_min(1)).cpu().numpy()
            for row, i in enumerate(idx):
                embeddings[i] = pooled[row]
                lengths[i] = int(mask[row].sum())
    return Encoded(np.stack(embeddings), lengths)


@dataclass
class Reference:
    texts: list[str]
    """Held-out texts, topped up from training when few: what traffic is compared with."""
    held_out: list[str]
    """Only the held-out ones (their unseen-word rate is the baseline; training texts have none)."""
    train: list[str]
    inputs: list[Any]
    """What the model is given for each of `texts` (Task.model_input: a text, or a pair of texts)."""


def reference_texts(trained: TrainedRun, cfg: MonitorConfig) -> Reference:
    """Held-out splits first, topped up from training when small."""
    task = trained.task
    for path in (trained.config.data.train, trained.config.data.validation, trained.config.data.test):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{path}: the data this run was trained on is gone; monitor compares with it")
    splits = load_splits(task, trained.config)
    train = [task.view(ex).input for ex in splits.train]
    held_out_examples = [*splits.validation, *splits.test]
    held_out = [task.view(ex).input for ex in held_out_examples]
    rng = np.random.default_rng(cfg.seed)
    examples = list(held_out_examples)
    if len(examples) < SMALL_REFERENCE:
        extra = rng.permutation(len(train))[: cfg.reference_examples - len(examples)]
        examples += [splits.train[i] for i in extra]
    if len(examples) > cfg.reference_examples:
        examples = [examples[i] for i in sorted(rng.permutation(len(examples))[: cfg.reference_examples])]
    texts = [task.view(ex).input for ex in examples]
    return Reference(texts, held_out, train, [task.model_input(ex) for ex in examples])


def monitor(
    run: Path,
    since: float | None,
    overrides: list[str] | None = None,
    log_url: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """The drift report (also written to RUN/drift.json); report["drift"] is True when any detector alerts.
    `overrides`: dotted keys on the serving version's config (monitor.domain_auc=0.8)."""
    deployment = Deployment(run)
    version = deployment.current()
    trained = load_run(deployment.folder(version), device=device)
    cfg = build_config(trained.config.model_dump(mode="json"), overrides or []).monitor
    endpoint = trained.task.endpoint
    log = RequestLog(log_url or default_url(deployment.root))
    try:
        rows = log.requests(deployment.root, since, endpoint)
    finally:
        log.close()
    rows = [r for r in rows if trained.task.traffic_text(r["input"]).strip()][-cfg.recent_examples :]
    report: dict[str, Any] = {
        "created": time.time(),
        "run": str(deployment.root),
        "version": version,
        "since": since,
        "requests": len(rows),
        "detectors": {},
        "drift": False,
    }
    if len(rows) < cfg.min_requests:
        report["status"] = "insufficient_data"
        report["message"] = f"{len(rows)} requests logged in the window; at least {cfg.min_requests} needed"
        _write(deployment, report)
        return report
    reference = reference_texts(trained, cfg)
    recent = [trained.task.traffic_text(r["input"]) for r in rows]
    detectors, unfamiliar = run_detectors(trained, cfg, reference, recent, rows)
    report["detectors"] = {name: d.as_json() for name, d in detectors.items()}
    report["alerts"] = [name for name, d in detectors.items() if d.alert]
    report["drift"] = bool(report["alerts"])
    report["status"] = "drift" if report["drift"] else "ok"
    ranked = np.argsort(-unfamiliar)
    report["most_unfamiliar"] = [
        {"id": rows[i]["id"], "text": recent[i][:300], "p_recent": round(float(unfamiliar[i]), 4)}
        for i in ranked[:5]
    ]
    report["_ranking"] = [rows[i]["id"] for i in ranked]
    _write(deployment, report)
    return report


def run_detectors(
    trained: TrainedRun,
    cfg: MonitorConfig,
    reference: Reference,
    recent: list[str],
    rows: list[dict[str, Any]],
) -> tuple[dict[str, drift.Detection], np.ndarray]:
    """Every detector on reference vs recent texts (embedding drift, lengths, unseen words; for a classifier
    its predicted label shares and confidence too), and how unfamiliar each recent text is to the domain
    classifier."""
    ref, rec = encode_texts(trained, reference.texts), encode_texts(trained, recent)
    detectors: dict[str, drift.Detection] = {}
    detectors["domain_classifier_auc"], unfamiliar = drift.domain_classifier(
        ref.embeddings, rec.embeddings, cfg.domain_auc, cfg.seed
    )
    detectors["mmd"] = drift.mmd(ref.embeddings, rec.embeddings, cfg.mmd_p_value, cfg.permutations, cfg.seed)
    detectors["length_ks"] = drift.length_shift(ref.lengths, rec.lengths, cfg.length_p_value)
    known = drift.vocabulary(reference.train)
    detectors["oov_rate_increase"] = drift.oov_shift(
        drift.oov_rate(reference.held_out or reference.texts, known),
        drift.oov_rate(recent, known),
        cfg.oov_increase,
    )
    task = trained.task
    answers = task.served_outputs(trained.model, reference.inputs, trained.pad_id)
    categories = task.output_categories(answers, [r["output"] for r in rows]) if answers else None
    if categories is not None:
        names, predicted, served = categories
        detectors["prediction_psi"] = drift.prediction_shift(predicted, served, names, cfg.psi)
    expected = [a["confidence"] for a in answers if a.get("confidence") is not None]
    confidences = [r["confidence"] for r in rows if r["confidence"] is not None]
    if expected and confidences:
        detectors["confidence_drop"] = drift.confidence_drop(expected, confidences, cfg.confidence_drop)
    return detectors, unfamiliar


def _write(deployment: Deployment, report: dict[str, Any]) -> None:
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    write_json_atomic(deployment.root / "drift.json", public)
    with (deployment.root / "drift_history.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(
            json.dumps({k: public[k] for k in ("created", "version", "requests", "status", "drift")}) + "\n"
        )


def write_sample(run: Path, report: dict[str, Any], out: Path, count: int, log_url: str | None = None) -> int:
    """The `count` most unfamiliar recent requests, for a person to label: CSV (id, text, label) for a
    classifier, JSONL (id, messages ending with an empty assistant answer) for chat. Returns rows written."""
    deployment = Deployment(run)
    ids = report.get("_ranking", [])[:count]
    log = RequestLog(log_url or default_url(deployment.root))
    try:
        rows = [row for row in (log.find(i) for i in ids) if row is not None]
    finally:
        log.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    if rows and rows[0]["endpoint"] in ("classify", "score"):
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text", "label"])
            writer.writerows([row["id"], row["input"], ""] for row in rows)
    else:
        with out.open("w", encoding="utf-8") as handle:
            for row in rows:
                messages = [*row["input"], {"role": "assistant", "content": ""}]
                handle.write(json.dumps({"id": row["id"], "messages": messages}, ensure_ascii=False) + "\n")
    return len(rows)


def print_monitor_report(console: Console, run: Path, report: dict[str, Any]) -> None:
    """What `tunesmith monitor` prints: the version, the requests seen, the status, then each detector
    (alerts in red)."""
    console.print(
        f"[bold]{run}[/] version {report['version']}: {report['requests']} requests, "
        f"status [bold]{report['status']}[/]"
    )
    for line in describe(report):
        console.print(escape(line), style="red" if line.startswith("ALERT") else None)


def describe(report: dict[str, Any]) -> list[str]:
    """Plain lines for the console."""
    if report["status"] == "insufficient_data":
        return [report["message"]]
    lines = []
    for name, d in report["detectors"].items():
        mark = "ALERT" if d["alert"] else "ok"
        extra = ""
        if "p_value" in d["detail"]:
            extra = f", p={d['detail']['p_value']:.3g}"
        lines.append(f"{mark:5}  {name}: {d['score']:.4g} (threshold {d['threshold']:g}{extra})")
    return lines
