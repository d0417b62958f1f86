"""Trackers without a model: what the run's records become, the worker that keeps a failing or slow tracker
off the training thread, and each tracker read back with its own tool's reader (TensorBoard's event reader,
MlflowClient on a SQLite store)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import build_config
from tunesmith.errors import ConfigError
from tunesmith.sections import TrainConfig
from tunesmith.tracking import TRACKERS
from tunesmith.tracking.base import Tracker
from tunesmith.tracking.records import evaluation_metrics, evaluation_text, event_metrics, flat_params
from tunesmith.tracking.run_tracking import TRACKERS_FILE, RunTracking, saved_states, tracker_classes
from tunesmith.tracking.worker import TrackerWorker

REPORT = {
    "headline": ["accuracy", "macro_f1"],
    "tuned": {"accuracy": 0.8, "macro_f1": 0.75, "examples": 40},
    "base": {"accuracy": 0.7, "macro_f1": 0.6},
    "delta": {"accuracy": 0.1, "macro_f1": 0.15},
    "interval": {
        "macro_f1": {"delta": 0.15, "low": 0.05, "high": 0.25, "level": 0.95, "excludes_zero": True}
    },
    "forgetting": {"warnings": ["drifted"], "embedding_similarity": 0.93, "retrieval_drop": 0.02},
}


def test_run_records_become_metrics_by_step_and_flat_params():
    train = {"event": "train", "step": 10, "epoch": 1, "loss": 0.5, "lr": 1e-3, "samples_per_second": 80.0}
    assert event_metrics(train) == (
        {"train/loss": 0.5, "train/learning_rate": 1e-3, "train/samples_per_second": 80.0},
        10,
    )
    validation = {"event": "validation", "step": 8, "epoch": 1, "loss": 1.2, "macro_f1": 0.4, "best": True}
    assert event_metrics(validation) == ({"validation/loss": 1.2, "validation/macro_f1": 0.4}, 8)
    assert event_metrics({"event": "frozen_prefix_cache", "hits": 3}) is None

    params = flat_params({"train": {"epochs": 3, "report_to": ["mlflow"], "init_from": None}, "task": {}})
    assert params == {
        "train.epochs": "3",
        "train.report_to": '["mlflow"]',
        "train.init_from": "null",
        "task": "{}",
    }
    assert len(flat_params({"long": "x" * 9000})["long"]) == 6000


def test_evaluation_gives_base_tuned_gain_interval_and_forgetting():
    metrics = evaluation_metrics(REPORT)
    assert metrics["test/base/macro_f1"] == 0.6 and metrics["test/tuned/macro_f1"] == 0.75
    assert metrics["test/gain/macro_f1"] == 0.15
    assert (metrics["test/gain_low/macro_f1"], metrics["test/gain_high/macro_f1"]) == (0.05, 0.25)
    assert "test/gain_low/accuracy" not in metrics  # no interval for it in this report
    assert metrics["forgetting/embedding_similarity"] == 0.93 and "forgetting/warnings" not in metrics
    text = evaluation_text(REPORT)
    assert (
        "| macro_f1 | 0.6000 | 0.7500 | +0.150 | [+0.050, +0.250] |" in text and "forgetting: drifted" in text
    )


class Recording(Tracker):
    """A tracker that keeps what it is sent; `fail_on` names a method that raises, `hold` one that blocks."""

    name = "recording"
    needs = "nothing"

    def __init__(self, fail_on: str = "", hold: threading.Event | None = None):
        super().__init__(Path("."), TrainConfig(), {})
        self.calls: list[tuple[str, Any]] = []
        self.fail_on, self.hold = fail_on, hold

    @classmethod
    def available(cls) -> bool:
        return True

    def _got(self, method: str, *args: Any) -> None:
        if method == self.fail_on:
            raise ConnectionError("server at http://127.0.0.1:9 refused the connection\nmore detail")
        if self.hold is not None:
            self.hold.wait()
        self.calls.append((method, args))

    def start(self, resume: bool) -> dict[str, Any]:
        self._got("start", resume)
        return {"resumed": resume}

    def params(self, params: dict[str, str]) -> None:
        self._got("params", params)

    def metrics(self, values: dict[str, float], step: int) -> None:
        self._got("metrics", values, step)

    def text(self, name: str, markdown: str) -> None:
        self._got("text", name)

    def finish(self, status: str) -> None:
        self._got("finish", status)


def test_a_failing_tracker_warns_once_and_the_others_go_on():
    broken, working, said = Recording(fail_on="metrics"), Recording(), []
    broken.name = "broken"
    worker = TrackerWorker([broken, working], said.append)
    worker.call("start", False)
    for step in range(1, 6):
        worker.call("metrics", {"train/loss": 1.0 / step}, step)
    worker.call("finish", "finished")
    worker.close()
    assert len(said) == 1 and said[0].startswith("tracker broken stopped (ConnectionError: server at")
    assert "more detail" not in said[0]
    assert [c[0] for c in broken.calls] == ["start"]  # nothing after its failure
    assert [c[0] for c in working.calls] == ["start", *["metrics"] * 5, "finish"]
    assert list(worker.failed) == ["broken"]


def test_metrics_queued_together_go_as_one_request_in_order():
    class Gathering(Recording):
        def metrics_many(self, batches: list[tuple[dict[str, float], int]]) -> None:
            self.calls.append(("metrics_many", batches))

    tracker = Gathering()
    worker = TrackerWorker([tracker], print)
    for step in range(50):
        worker.call("metrics", {"train/loss": 1.0 / (step + 1)}, step)
    worker.call("text", "after", "x")
    assert worker.wait(10)  # everything queued before it was sent
    assert [c[0] for c in tracker.calls][-1] == "text"
    worker.close()
    sent = [batch for method, batch in tracker.calls if method == "metrics_many"]
    assert len(sent) <= 2 and [step for batch in sent for _, step in batch] == list(range(50))


def test_a_tracker_that_hangs_never_holds_the_caller():
    hold, said = threading.Event(), []
    worker = TrackerWorker([Recording(hold=hold)], said.append)
    started = time.perf_counter()
    for step in range(1000):
        worker.call("metrics", {"train/loss": 1.0}, step)
    queued = time.perf_counter() - started
    worker.close(wait_s=0.5)
    assert queued < 0.5 and time.perf_counter() - started < 2.0
    assert len(said) == 1 and "still sending after" in said[0] and "metrics.jsonl" in said[0]
    hold.set()


def test_unknown_and_valid_trackers():
    with pytest.raises(ConfigError, match="unknown tracker 'wandb'; valid trackers: mlflow, tensorboard"):
        tracker_classes(TrainConfig(report_to=["wandb"]))
    assert [
        c.name for c in tracker_classes(TrainConfig(report_to=["tensorboard", "mlflow", "tensorboard"]))
    ] == [
        "tensorboard",
        "mlflow",
    ]
    assert TRACKERS.names() == ["mlflow", "tensorboard"]


def scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]


def test_tensorboard_events_read_back_and_a_resume_replaces_what_followed_its_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TRACKERS.get("tensorboard")(tmp_path, TrainConfig(), {})
    assert tracker.start(resume=False) == {"logdir": str(tmp_path / "tensorboard")}
    tracker.params({"train.epochs": "3"})
    for step in (1, 10, 20, 30):
        tracker.metrics({"train/loss": 1.0 / step}, step)
    tracker.finish("interrupted")
    assert scalars(tmp_path / "tensorboard", "train/loss") == [
        (1, 1.0),
        (10, 0.1),
        (20, 0.05),
        (30, 0.033333),
    ]

    again = TRACKERS.get("tensorboard")(tmp_path, TrainConfig(), {})
    again.start(resume=True)  # the checkpoint was at step 15: the next logged step is 20
    for step in (20, 30, 40):
        again.metrics({"train/loss": 2.0 / step}, step)
    again.finish("finished")
    assert scalars(tmp_path / "tensorboard", "train/loss") == [
        (1, 1.0),
        (10, 0.1),
        (20, 0.1),
        (30, 0.066667),
        (40, 0.05),
    ]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| train.epochs | 3 |" in config


def test_mlflow_run_in_a_local_store_read_back_with_mlflow_client(tmp_path):
    from mlflow.tracking import MlflowClient

    root = tmp_path / "runs" / "demo"
    root.mkdir(parents=True)
    config = build_config({"train": {"report_to": ["mlflow"]}, "output_dir": str(root)})
    said: list[str] = []
    tracking = RunTracking(root, config, resume=False, warn=said.append)
    tracking.record(
        {"event": "train", "step": 1, "epoch": 1, "loss": 2.0, "lr": 1e-3, "samples_per_second": 9.0}
    )
    tracking.record(
        {"event": "validation", "step": 5, "epoch": 1, "loss": 1.0, "macro_f1": 0.5, "best": True}
    )
    tracking.evaluated(REPORT, 5)
    (root / "run.json").write_text("{}\n")
    tracking.files([root / "run.json", root / "absent.json"])
    tracking.close("finished")
    assert said == []

    saved = saved_states(root)["mlflow"]
    assert saved["uri"] == f"sqlite:///{tmp_path / 'runs'}/mlflow.db" and (root / TRACKERS_FILE).is_file()
    client = MlflowClient(saved["uri"])
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "demo"
    assert run.data.params["train.report_to"] == '["mlflow"]' and run.data.params["train.epochs"] == "3"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "validation/macro_f1")] == [
        (5, 0.5)
    ]
    assert run.data.metrics["test/gain_low/macro_f1"] == 0.05
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"run.json", "base_vs_tuned.md"}
    assert (tmp_path / "runs" / "mlartifacts").is_dir()  # beside the database, not in the working folder


def test_an_mlflow_server_that_does_not_answer_warns_once_and_never_blocks(tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # tunesmith's own: 2 retries
    config = build_config({"train": {"report_to": ["mlflow"], "mlflow_uri": f"http://127.0.0.1:{port}"}})
    said: list[str] = []
    started = time.perf_counter()
    tracking = RunTracking(tmp_path, config, resume=False, warn=said.append)
    for step in range(1, 200):
        tracking.record({"event": "train", "step": step, "epoch": 1, "loss": 1.0, "lr": 1e-3})
    assert time.perf_counter() - started < 0.5  # queued, never sent from the caller's thread
    tracking.close("finished")
    assert time.perf_counter() - started < 30  # given up on in seconds (MLflow's default retries for minutes)
    assert len(said) == 1 and said[0].startswith("tracker mlflow stopped (") and "training goes on" in said[0]


def test_a_resumed_run_carries_on_in_the_same_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    root = tmp_path / "run"
    root.mkdir()
    config = build_config({"train": {"report_to": ["mlflow"]}, "output_dir": str(root)})
    first = RunTracking(root, config, resume=False, warn=print)
    first.record({"event": "train", "step": 1, "epoch": 1, "loss": 2.0, "lr": 1e-3})
    first.close("interrupted")
    run_id = saved_states(root)["mlflow"]["run_id"]
    client = MlflowClient(config.train.mlflow_uri)
    assert client.get_run(run_id).info.status == "KILLED"

    again = RunTracking(root, config, resume=True, warn=print)
    again.record({"event": "train", "step": 10, "epoch": 1, "loss": 1.0, "lr": 1e-3})
    again.close("finished")
    assert saved_states(root)["mlflow"]["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.0), (10, 1.0)]
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
