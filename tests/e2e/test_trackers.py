"""`tunesmith train ... train.report_to=[tensorboard,mlflow]` against a real `mlflow server` on localhost,
everything read back with the trackers' own readers (MlflowClient over HTTP, TensorBoard's event reader) and
compared with what the run folder recorded; and a run whose tracking server is down trains to the end."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from tests.conftest import demo_files
from tests.e2e.test_cli import tunesmith
from tunesmith.config import build_config
from tunesmith.recipes.finetune import finetune

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` with a SQLite store and its own artifact store, as a team would run one."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (folder / "server.log").open("w")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{folder}/server.db"]
    command += ["--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
        assert process.poll() is None, (folder / "server.log").read_text()
    else:
        raise AssertionError("mlflow server did not start: " + (folder / "server.log").read_text())
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0}).Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def same_curve(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """The same steps, and the same values (TensorBoard keeps float32)."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx(
        [v for _, v in want], rel=1e-6
    )


def test_a_run_is_live_in_mlflow_and_tensorboard_as_its_folder_records_it(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    files = demo_files(tmp_path, train=60, validation=30, test=30)
    out = tmp_path / "runs" / "tickets"
    proc = tunesmith(
        "train", "--model", "minilm", "--data", files["train"], "--validation", files["validation"],
        "--test", files["test"], "--method", "lora", "--out", out, "model.max_length=48",
        "train.epochs=2", "train.log_every_steps=1", "train.estimate=always", "evaluation.bootstrap_resamples=200",
        "train.report_to=[tensorboard,mlflow]", f"train.mlflow_uri={mlflow_server}", "train.mlflow_experiment=tickets",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "tracker" not in proc.stdout + proc.stderr and "INFO mlflow" not in proc.stderr

    events = jsonl(out / "metrics.jsonl")
    losses = [(r["step"], r["loss"]) for r in events if r["event"] == "train"]
    f1s = [(r["step"], r["macro_f1"]) for r in events if r["event"] == "validation"]
    summary, report = json.loads((out / "run.json").read_text()), json.loads((out / "eval.json").read_text())
    assert len(losses) == 8 and [s for s, _ in f1s] == [0, 4, 8]

    saved = json.loads((out / "trackers.json").read_text())
    assert saved["worker"]["failed"] == {} and saved["worker"]["cpu_seconds"]["metrics_many"] > 0
    client = MlflowClient(mlflow_server)
    run = client.get_run(saved["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tickets"
    assert client.get_experiment(run.info.experiment_id).name == "tickets"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.name"] == "minilm"
    assert run.data.params["method.name"] == "lora" and run.data.params["task.name"] == "classification"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert same_curve([(m.step, m.value) for m in sorted(history, key=lambda m: m.step)], losses)
    history = client.get_metric_history(run.info.run_id, "validation/macro_f1")
    assert same_curve([(m.step, m.value) for m in sorted(history, key=lambda m: m.step)], f1s)
    metrics = run.data.metrics
    rates = [(r["step"], r["lr"]) for r in events if r["event"] == "train"]
    history = client.get_metric_history(run.info.run_id, "train/learning_rate")
    assert same_curve([(m.step, m.value) for m in sorted(history, key=lambda m: m.step)], rates)
    assert metrics["train/samples_per_second"] > 0
    for key in report["headline"]:
        assert metrics[f"test/tuned/{key}"] == pytest.approx(report["tuned"][key])
        assert metrics[f"test/base/{key}"] == pytest.approx(report["base"][key])
        assert metrics[f"test/gain_low/{key}"] == pytest.approx(report["interval"][key]["low"])
    assert metrics["forgetting/embedding_similarity"] == pytest.approx(
        report["forgetting"]["embedding_similarity"]
    )
    assert metrics["plan/measured_peak_mb"] == pytest.approx(summary["peak_memory_bytes"] / 2**20)
    assert metrics["plan/estimated_peak_mb"] == pytest.approx(summary["estimate"]["peak_bytes"] / 2**20)
    assert metrics["data/train_examples"] == 60 and metrics["data/errors"] == 0

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "run.json", "eval.json", "data_check.json", "report.html", "model"} <= artifacts
    assert {"data_check.md", "plan_vs_measured.md", "base_vs_tuned.md"} <= artifacts
    assert "adapter_model.safetensors" in {
        Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")
    }
    copy = Path(client.download_artifacts(run.info.run_id, "report.html", str(tmp_path)))
    assert copy.read_bytes() == (out / "report.html").read_bytes()
    table = Path(client.download_artifacts(run.info.run_id, "base_vs_tuned.md", str(tmp_path))).read_text()
    tuned = report["tuned"]["macro_f1"]
    assert f"| macro_f1 | {report['base']['macro_f1']:.4f} | {tuned:.4f} |" in table

    assert same_curve(scalars(out / "tensorboard", "train/loss"), losses)
    assert same_curve(scalars(out / "tensorboard", "validation/macro_f1"), f1s)
    last = summary["optimizer_steps"]
    assert same_curve(scalars(out / "tensorboard", "test/tuned/macro_f1"), [(last, tuned)])


def test_a_tracking_server_that_is_down_warns_once_and_training_finishes(tiny_bert_dir, tmp_path):
    files = demo_files(tmp_path, train=40, validation=16, test=16)
    tree = {
        "model": {"name": str(tiny_bert_dir), "max_length": 32},
        "data": {k: str(v) for k, v in files.items()},
        "method": {"name": "lora", "rank": 4},
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "report_to": ["mlflow"],
            "mlflow_uri": f"http://127.0.0.1:{free_port()}",
        },
        "evaluation": {"forgetting": False, "bootstrap_resamples": 100},
        "output_dir": str(tmp_path / "run"),
    }
    said = io.StringIO()
    result = finetune(build_config(tree), Console(file=said, width=1000))
    assert result.evaluation is not None and (tmp_path / "run" / "eval.json").is_file()
    warnings = [line for line in said.getvalue().splitlines() if "tracker mlflow stopped" in line]
    assert len(warnings) == 1 and "training goes on without it" in warnings[0]
    saved = json.loads((tmp_path / "run" / "trackers.json").read_text())
    assert "mlflow" not in saved and list(saved["worker"]["failed"]) == ["mlflow"]  # nothing to resume into
