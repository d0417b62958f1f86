"""Multi-label fine-tuning end to end on real Debtags (data/debian-tags, six tags): thresholds tuned on
validation travel with the model that was validated with them; base vs tuned with intervals; predict."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import shipped_slices
from tests.e2e.test_cli import train_cli, tunesmith

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TAGS = (
    "interface::commandline",
    "interface::graphical",
    "interface::daemon",
    "works-with::text",
    "network::server",
)


@pytest.fixture(scope="module")
def tags_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tags")
    data = shipped_slices(
        "debian-tags",
        tmp,
        {"train": 240, "validation": 80, "test": 80},
        edit=lambda r: {**r, "labels": [t for t in r["labels"] if t in TAGS]},  # some keep none
    )
    run = tmp / "run"
    proc = train_cli(
        run, data, "minilm", "lora", "--task", "multilabel", "model.max_length=64", "train.epochs=2",
        "train.batch_size=16", "train.learning_rate=0.002", "evaluation.forgetting=false", "train.estimate=never",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, data


def test_the_thresholds_are_the_ones_the_kept_model_tunes_on_validation(tags_run):
    from tunesmith.evaluation.multilabel import THRESHOLDS
    from tunesmith.inference import load_run

    run, data = tags_run
    stored = json.loads((run / "model" / "tunesmith.json").read_text())["task"]["thresholds"]
    assert sorted(stored) == sorted(TAGS) and set(stored.values()) <= {float(t) for t in THRESHOLDS}
    trained = load_run(run)
    assert trained.task.thresholds == [stored[label] for label in trained.task.labels]
    validation = trained.task.read(data["validation"], "auto")
    features = trained.task.encode(validation, trained.tokenizer)
    trained.task.evaluate(trained.model, features, 16, trained.pad_id, during_training=True)
    assert trained.task.thresholds == [stored[label] for label in trained.task.labels]


def test_base_and_tuned_are_compared_with_intervals_and_step_0_is_the_probe(tags_run):
    run, data = tags_run
    report = json.loads((run / "eval.json").read_text())
    for name in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert name in report["base"] and name in report["tuned"] and name in report["interval"], name
    assert "one logistic regression per label" in report["base_description"]
    assert set(report["tuned"]["per_label"]["network::server"]) >= {"f1", "support", "threshold"}
    # step 0 validates the encoder with the probe as its head: the base model, thresholds tuned alike
    from tunesmith.inference import load_run
    from tunesmith.models.catalog import resolve_model

    trained = load_run(run)
    validation = trained.task.read(data["validation"], "auto")
    probe = trained.task.evaluate_baseline(resolve_model("minilm"), validation, trained.run.probe)
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    step0 = next(e for e in events if e["event"] == "validation" and e["step"] == 0)
    assert step0["macro_f1"] == pytest.approx(probe.metrics["macro_f1"], abs=0.02)


def test_predict_gives_the_labels_at_or_above_their_thresholds(tags_run):
    run, _ = tags_run
    texts = [
        "A daemon that serves files over the network to clients.",
        "Command-line tool to convert text files.",
    ]
    proc = tunesmith("predict", run, "--json", *texts)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    thresholds = json.loads((run / "model" / "tunesmith.json").read_text())["task"]["thresholds"]
    for row in rows:
        assert set(row["probabilities"]) == set(TAGS)
        assert row["labels"] == [t for t, p in row["probabilities"].items() if p >= thresholds[t]]
        assert list(row["probabilities"].values()) == sorted(row["probabilities"].values(), reverse=True)


def test_the_server_answers_classify_with_the_labels_over_their_thresholds(tags_run, tmp_path):
    from tests.e2e.served import Server

    run, _ = tags_run
    thresholds = json.loads((run / "model" / "tunesmith.json").read_text())["task"]["thresholds"]
    served = Server([f"tags={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            texts = ["A daemon that serves files over the network.", "Graphical editor for images."]
            response = client.post("/v1/classify", json={"model": "tags", "input": texts, "top_k": 2})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert [item["index"] for item in data] == [0, 1]
        for item in data:
            shown = {s["label"]: s for s in item["scores"]}
            assert len(shown) == 2 and all(s["threshold"] == thresholds[n] for n, s in shown.items())
            assert (
                item["label"] == item["scores"][0]["label"]
                and item["confidence"] == item["scores"][0]["score"]
            )
        predicted = json.loads(tunesmith("predict", run, "--json", *texts).stdout.splitlines()[0])
        assert response.json()["data"][0]["labels"] == predicted["labels"]
    finally:
        served.stop()


def test_exports_feedback_and_drift_of_a_multilabel_run(tags_run, tmp_path):
    import numpy as np
    import onnxruntime
    from transformers import AutoTokenizer

    from tests.e2e.served import Server

    run, data = tags_run
    texts = ["A daemon that serves files over the network.", "Graphical editor for images."]
    expected = [
        json.loads(x)["probabilities"]
        for x in tunesmith("predict", run, "--json", *texts).stdout.splitlines()
    ]
    for fmt in ("onnx", "merged"):  # each export checks itself against the run's model, or fails
        proc = tunesmith("export", run, "--format", fmt, "--out", tmp_path / fmt)
        assert proc.returncode == 0, proc.stderr
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")
    batch = tokenizer(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    (logits,) = session.run(
        None, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    )
    labels = json.loads((tmp_path / "onnx" / "config.json").read_text())["id2label"]
    for row, probabilities in zip(1 / (1 + np.exp(-logits)), expected, strict=True):
        assert {labels[str(i)]: float(p) for i, p in enumerate(row)} == pytest.approx(probabilities, abs=1e-4)

    with data["test"].open(encoding="utf-8") as handle:
        traffic = [json.loads(line)["text"] for line in handle][:40]
    since = datetime.now(timezone.utc).isoformat()
    served = Server([f"tags={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            items = client.post("/v1/classify", json={"model": "tags", "input": traffic}).json()["data"]
            first = items[0]["id"]
            refused = client.post("/v1/feedback", json={"id": first, "label": "network::server;nope"})
            assert refused.status_code == 422 and "unknown label 'nope'" in refused.text
            taken = client.post(
                "/v1/feedback", json={"id": first, "label": "network::server; works-with::text"}
            )
            assert taken.status_code == 200, taken.text
    finally:
        served.stop()
    proc = tunesmith("monitor", run, "--since", since, "--json", "monitor.min_requests=20")
    assert proc.returncode in (0, 1), proc.stderr
    psi = json.loads(proc.stdout)["detectors"]["prediction_psi"]
    assert set(psi["detail"]["reference_shares"]) == {*TAGS, "(no label)"}


def test_the_report_has_a_per_label_table_with_thresholds(tags_run, tmp_path):
    run, _ = tags_run
    proc = tunesmith("report", run, "--out", tmp_path / "report.html")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "report.html").read_text()
    section = html.split("<h2>Per label (tuned, test set)</h2>")[1]
    assert "threshold" in section and all(tag in section for tag in TAGS)
