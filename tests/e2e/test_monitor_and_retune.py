"""Keeping a served model good, end to end through the CLI and a real server: drift on shifted traffic and
none on same-distribution traffic; then serve -> feedback -> retune -> promote -> rollback, live."""

from __future__ import annotations

import csv
import json
import re
import time
from datetime import datetime, timezone

import pytest

from tests.conftest import demo_rows
from tests.e2e.served import ADMIN_KEY, Server, classifier_run
from tests.e2e.test_cli import tunesmith
from tunesmith.evaluation.forgetting import reference_sentences

pytestmark = pytest.mark.slow
LABELS = ("doc", "libdevel", "net")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deployed")
    run = classifier_run(tmp / "tickets", LABELS, report_to=["mlflow"])  # in tickets/mlflow.db
    server = Server([f"tickets={run}"], tmp / "server", "--batch-wait-ms", "5")
    yield run, server
    if server.process.poll() is None:
        server.stop()


def send(server: Server, texts: list[str]) -> list[dict]:
    items = []
    with server.client() as client:
        for start in range(0, len(texts), 10):
            response = client.post(
                "/v1/classify", json={"model": "tickets", "input": texts[start : start + 10]}
            )
            assert response.status_code == 200, response.text
            items += response.json()["data"]
    return items


def window_start() -> str:
    time.sleep(0.01)
    return datetime.now(timezone.utc).isoformat()


def monitor(run, since: str, *extra: str) -> tuple[int, dict]:
    proc = tunesmith("monitor", run, "--since", since, "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_same_distribution_traffic_is_not_drift_and_another_domain_is(deployed, tmp_path):
    run, server = deployed
    unseen = [text for text, _ in demo_rows("train", LABELS)[90:160]]  # never trained on
    since = window_start()
    send(server, unseen)
    code, same = monitor(run, since)
    assert code == 0 and same["status"] == "ok" and same["requests"] == 70, same
    assert same["detectors"]["domain_classifier_auc"]["score"] < 0.75

    since = window_start()
    send(server, reference_sentences()[:70])  # everyday English about bread, weather, trains...
    sample = tmp_path / "to-label.csv"
    code, shifted = monitor(run, since, "--sample-to-label", str(sample), "--sample", "10")
    assert code == 1 and shifted["drift"] and shifted["status"] == "drift"
    auc = shifted["detectors"]["domain_classifier_auc"]
    assert auc["alert"] and auc["score"] > same["detectors"]["domain_classifier_auc"]["score"] + 0.2
    assert shifted["detectors"]["mmd"]["alert"]
    assert shifted["detectors"]["oov_rate_increase"]["alert"]
    with sample.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and all(r["label"] == "" and r["id"].startswith("cls-") for r in rows)

    with server.client() as client:
        metrics = client.get("/metrics").text
    score = re.search(
        r'tunesmith_drift_score\{detector="domain_classifier_auc",model="tickets"\} (\S+)', metrics
    )
    assert score and float(score.group(1)) == pytest.approx(auc["score"])
    assert 'tunesmith_drift_alert{model="tickets"} 1.0' in metrics

    page = tunesmith("report", run, "--out", tmp_path / "report.html")
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Drift</h2>" in html and "domain classifier auc" in html and "ALERT" in html


def test_feedback_retune_promote_and_roll_back_without_restart(deployed):
    run, server = deployed
    rows = demo_rows("train", LABELS)[160:200]
    items = send(server, [text for text, _ in rows])
    with server.client() as client:
        for item, (_, label) in zip(items, rows, strict=True):
            response = client.post("/v1/feedback", json={"id": item["id"], "label": label})
            assert response.status_code == 200, response.text

    proc = tunesmith("retune", run, "--json", "retune.tolerance=0.2", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["version"] == "v2" and decision["from"] == "v1" and decision["promoted"]
    assert decision["data"]["corrections_used"] == 40 and decision["data"]["corrections_in_held_out"] == 0
    comparison = decision["comparison"]
    assert (
        comparison["metric"] == "macro_f1" and comparison["interval"]["low"] <= comparison["interval"]["high"]
    )
    assert (run / "versions" / "v2" / "model" / "tunesmith.json").is_file()
    train = (run / "versions" / "v2-data" / "train.jsonl").read_text().splitlines()
    assert len(train) == 90 + 40 and json.loads(train[-1])["label"] == rows[-1][1]

    server.wait_for_version("tickets", "v2")  # the server saw serving.json change: no restart
    assert send(server, ["Manual pages for the network tools"])[0]["id"]
    with server.client() as client:
        assert client.get("/v1/models/tickets").json()["version"] == "v2"
    with server.client(ADMIN_KEY) as admin:
        assert admin.post("/v1/admin/models/tickets/version", json={"version": "v9"}).status_code == 404
        response = admin.post("/v1/admin/models/tickets/version", json={"version": "v1"})
        assert response.json() == {"model": "tickets", "serving": "v1"}
        assert admin.get("/v1/admin/models/tickets/versions").json()["versions"] == ["v1", "v2"]
    server.wait_for_version("tickets", "v1", timeout=1)

    assert tunesmith("rollback", run, "--to", "v2").returncode == 0
    server.wait_for_version("tickets", "v2")
    back = tunesmith("rollback", run)  # to the version served before
    assert back.returncode == 0 and "now serving v1 (was v2)" in back.stdout
    server.wait_for_version("tickets", "v1")
    listing = tunesmith("rollback", run, "--list")
    assert re.search(r"\* v1 ", listing.stdout) and "  v2 " in listing.stdout
    assert "Traceback" not in server.output.read_text()
    assert "has the alias 'serving'" in back.stdout
    assert_registry_serves(run, "v1", ["retune", "admin endpoint", "rollback", "rollback"])


def assert_registry_serves(run, version: str, reasons: list[str]) -> None:
    """MLflow's model registry, read with MlflowClient: each version trained (v1, and the retune's v2, logged
    into the same store) is a model version, and the alias "serving" is on `version`; every change is a tag."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{run.parent}/mlflow.db")
    versions = client.search_model_versions("name = 'tunesmith-run'")
    assert sorted(v.tags["tunesmith.version"] for v in versions) == ["v1", "v2"]
    runs = {v.tags["tunesmith.version"]: v.run_id for v in versions}
    assert runs["v2"] != runs["v1"] and client.get_run(runs["v2"]).info.status == "FINISHED"
    assert client.get_model_version_by_alias("tunesmith-run", "serving").tags["tunesmith.version"] == version
    tags = client.get_registered_model("tunesmith-run").tags
    changes = [tags[f"tunesmith.serving.{n}"] for n in range(1, len(reasons) + 1)]
    assert [reason in said for reason, said in zip(reasons, changes, strict=True)] == [True] * len(reasons)


def test_cli_refusals_are_plain_messages(deployed, tmp_path):
    run, _ = deployed
    proc = tunesmith("rollback", run, "--to", "v7")
    assert proc.returncode == 2 and "no finished version v7" in proc.stderr
    proc = tunesmith("monitor", run, "--since", "last week")
    assert proc.returncode == 2 and "give a span" in proc.stderr
    proc = tunesmith("serve", run, "--port", "0")
    assert proc.returncode == 2 and "API keys are required" in proc.stderr
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    proc = tunesmith("serve", run, "--api-key-file", short)
    assert proc.returncode == 2 and "at least 16 characters" in proc.stderr
    proc = tunesmith("retune", run, "--no-feedback")
    assert proc.returncode == 2 and "nothing to learn from" in proc.stderr
