"""Token classification end to end on real texts (data/debian-entities, a slice): the per-token probe is step
0; base vs tuned with intervals; predict's entities slice the text at their offsets; /v1/entities agrees with
predict through a real server; ONNX and merged exports check themselves; drift compares entity types."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import shipped_slices
from tests.e2e.test_cli import train_cli, tunesmith

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "A Rust library to read PNG and JPEG files over HTTP.",
    "Python bindings for a small SSH client written in C++.",
    "A game about cats.",
]


@pytest.fixture(scope="module")
def entity_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("entities")
    data = shipped_slices("debian-entities", tmp, {"train": 300, "validation": 60, "test": 80})
    run = tmp / "run"
    proc = train_cli(
        run, data, "minilm", "lora", "--task", "tokens", "model.max_length=96", "train.epochs=2",
        "train.batch_size=16", "train.learning_rate=0.002", "evaluation.forgetting=false", "train.estimate=never",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, data


def predicted(run: Path) -> list[dict]:
    proc = tunesmith("predict", run, "--json", *TEXTS)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_base_and_tuned_with_intervals_and_step_0_is_the_token_probe(entity_run):
    from tunesmith.inference import load_run
    from tunesmith.models.catalog import resolve_model

    run, data = entity_run
    report = json.loads((run / "eval.json").read_text())
    for name in ("f1", "precision", "recall", "accuracy"):
        assert name in report["base"] and name in report["tuned"] and name in report["interval"], name
    assert set(report["tuned"]["per_type"]) == {"LANG", "FORMAT", "PROTO"}
    assert report["tuned"]["f1"] > report["base"]["f1"]
    trained = load_run(run)
    validation = trained.task.read(data["validation"], "auto")
    probe = trained.task.evaluate_baseline(resolve_model("minilm"), validation, trained.run.probe)
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    step0 = next(e for e in events if e["event"] == "validation" and e["step"] == 0)
    assert step0["f1"] == pytest.approx(probe.metrics["f1"], abs=0.02)
    assert report["examples"] and all(
        {"prompt", "reference", "base", "tuned"} <= set(r) for r in report["examples"]
    )
    assert tunesmith("report", run).returncode == 0
    page = (run / "report.html").read_text()
    assert "Entities by type" in page and "LANG" in page and "Example outputs" in page


def test_predict_gives_entities_at_their_offsets_and_the_server_agrees(entity_run, tmp_path):
    from tests.e2e.served import Server

    run, data = entity_run
    rows = predicted(run)
    for row in rows:
        for entity in row["entities"]:
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]
            assert entity["type"] in {"LANG", "FORMAT", "PROTO"}
    assert any(e["text"] == "Python" for e in rows[1]["entities"])
    traffic = [json.loads(x)["text"] for x in data["test"].read_text().splitlines()][:30]
    since = datetime.now(timezone.utc).isoformat()
    served = Server([f"entities={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            response = client.post("/v1/entities", json={"input": TEXTS})
            assert response.status_code == 200, response.text
            assert [d["entities"] for d in response.json()["data"]] == [r["entities"] for r in rows]
            assert client.post("/v1/entities", json={"input": traffic}).status_code == 200
            wrong = client.post("/v1/classify", json={"input": "x"})
            assert wrong.status_code == 400 and "POST /v1/entities" in wrong.text
    finally:
        served.stop()
    proc = tunesmith("monitor", run, "--since", since, "--json", "monitor.min_requests=20")
    assert proc.returncode in (0, 1), proc.stderr
    shares = json.loads(proc.stdout)["detectors"]["prediction_psi"]["detail"]["reference_shares"]
    assert set(shares) == {"LANG", "FORMAT", "PROTO", "(no entity)"}


def test_onnx_and_merged_exports_reproduce_the_model(entity_run, tmp_path):
    run, _ = entity_run
    for fmt in ("onnx", "merged"):  # each export checks itself against the run's model, or fails
        proc = tunesmith("export", run, "--format", fmt, "--out", tmp_path / fmt)
        assert proc.returncode == 0, proc.stderr
        record = json.loads((tmp_path / fmt / "tunesmith_export.json").read_text())
        assert record["task"] == "tokens" and record["check"]["ok"]


def test_entities_sent_as_feedback_retune_a_new_version_judged_on_entity_f1(entity_run, tmp_path):
    from tests.e2e.served import Server

    run, _ = entity_run
    rows = [
        json.loads(line)
        for line in (ROOT / "data/debian-entities/train.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()[400:420]
    ]  # never trained on
    served = Server([f"entities={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            items = client.post("/v1/entities", json={"input": [r["text"] for r in rows]}).json()["data"]
            cut = {"id": items[0]["id"], "entities": [{"start": 0, "end": 2, "label": "LANG"}]}
            refused = client.post("/v1/feedback", json=cut)  # cuts the text's first word
            assert refused.status_code == 422 and "cuts a word" in refused.text
            unknown = {
                "id": items[0]["id"],
                "entities": [{"start": 0, "end": len(rows[0]["text"].split()[0]), "label": "DRUG"}],
            }
            assert "never occurs in the training data" in client.post("/v1/feedback", json=unknown).text
            label = client.post("/v1/feedback", json={"id": items[0]["id"], "label": "LANG"})
            assert label.status_code == 422 and "the model found entities" in label.text
            for item, row in zip(items, rows, strict=True):
                response = client.post("/v1/feedback", json={"id": item["id"], "entities": row["entities"]})
                assert response.status_code == 200, response.text
    finally:
        served.stop()
    proc = tunesmith("retune", run, "--json", "retune.tolerance=1", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["comparison"]["metric"] == "f1" and decision["data"]["corrections_used"] == len(rows)
    train = (run / "versions" / f"{decision['version']}-data" / "train.jsonl").read_text().splitlines()
    assert json.loads(train[-1]) == rows[-1]
