"""Regression end to end on real ratings (data/vader-movies, a slice): the ridge base and step 0 agree; base
vs tuned with intervals; predict; /v1/score through a real server, feedback with a number; ONNX and merged
exports read by onnxruntime and sentence-transformers give the same numbers in the target's units; the drift
report compares the score distribution."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shipped_slices
from tests.e2e.test_cli import train_cli, tunesmith

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["A warm, funny and moving film.", "Dull, lifeless and far too long.", "It is a film."]


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sentiment")
    data = shipped_slices("vader-movies", tmp, {"train": 240, "validation": 80, "test": 80})
    run = tmp / "run"
    proc = train_cli(
        run, data, "minilm", "lora", "--task", "regression", "task.target_column=sentiment", "model.max_length=64",
        "train.epochs=2", "train.batch_size=16", "train.learning_rate=0.002", "evaluation.forgetting=false",
        "train.estimate=never",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, data


def predicted(run: Path, texts: list[str]) -> list[float]:
    proc = tunesmith("predict", run, "--json", *texts)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["score"] for line in proc.stdout.splitlines()]


def test_base_and_tuned_are_compared_with_intervals_and_step_0_is_the_ridge(scored_run):
    from tunesmith.inference import load_run
    from tunesmith.models.catalog import resolve_model

    run, data = scored_run
    report = json.loads((run / "eval.json").read_text())
    for name in ("rmse", "mae", "r2", "pearson", "spearman"):
        assert name in report["base"] and name in report["tuned"] and name in report["interval"], name
    assert "ridge regression" in report["base_description"]
    assert len(report["tuned"]["residuals"]) == 10 and report["tuned"]["examples"] == 80
    trained = load_run(run)
    validation = trained.task.read(data["validation"], "auto")
    ridge = trained.task.evaluate_baseline(resolve_model("minilm"), validation, trained.run.probe)
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    step0 = next(e for e in events if e["event"] == "validation" and e["step"] == 0)
    assert step0["rmse"] == pytest.approx(ridge.metrics["rmse"], abs=0.01)
    # the default adapts MiniLM's top 3 layers: the bottom 3 ran once per text (the epoch 2 and the
    # validations after step 0 served from the cache)
    cache = next(e for e in events if e["event"] == "frozen_prefix_cache")
    assert cache["frozen_layers"] == 3 and cache["texts_kept"] <= 240 + 80
    assert cache["hits"] >= 240 + 2 * 80 and cache["misses"] <= 8 + 240 + 80
    # predictions are in the target's units: the mean prediction is near the mean rating, not near 0 +/- 1
    assert abs(report["tuned"]["mean_predicted"] - report["tuned"]["mean_truth"]) < 0.5


def test_predict_and_the_server_give_the_same_numbers_and_feedback_takes_a_number(scored_run, tmp_path):
    from tests.e2e.served import Server

    run, _ = scored_run
    expected = predicted(run, TEXTS)
    assert expected[0] > expected[1]  # a warm, funny film rates above a dull one
    served = Server([f"sentiment={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            response = client.post("/v1/score", json={"model": "sentiment", "input": TEXTS})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["target"] == "sentiment" and [d["index"] for d in body["data"]] == [0, 1, 2]
            assert [d["score"] for d in body["data"]] == pytest.approx(expected, abs=1e-4)
            wrong = client.post("/v1/classify", json={"model": "sentiment", "input": "x"})
            assert wrong.status_code == 400 and "POST /v1/score" in wrong.text
            first = body["data"][0]["id"]
            refused = client.post("/v1/feedback", json={"id": first, "label": "great"})
            assert refused.status_code == 422 and "the right sentiment" in refused.text
            taken = client.post("/v1/feedback", json={"id": first, "label": "3.5"})
            assert taken.status_code == 200, taken.text
    finally:
        served.stop()


def test_onnx_and_merged_exports_give_the_numbers_predict_gives(scored_run, tmp_path):
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    run, _ = scored_run
    expected = np.asarray(predicted(run, TEXTS))
    for fmt in ("onnx", "merged"):
        proc = tunesmith("export", run, "--format", fmt, "--out", tmp_path / fmt)
        assert proc.returncode == 0, proc.stderr
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")
    batch = tokenizer(TEXTS, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    (scores,) = session.run(
        None, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    )
    np.testing.assert_allclose(scores[:, 0], expected, atol=1e-3)
    merged = SentenceTransformer(str(tmp_path / "merged"), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(merged[:, 0], expected, atol=1e-3)


def test_the_drift_report_compares_the_distribution_of_scores(scored_run, tmp_path):
    from tests.e2e.served import Server

    run, data = scored_run
    with data["test"].open(encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][:40]
    since = datetime.now(timezone.utc).isoformat()
    served = Server([f"sentiment={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            assert client.post("/v1/score", json={"model": "sentiment", "input": texts}).status_code == 200
    finally:
        served.stop()
    proc = tunesmith("monitor", run, "--since", since, "--json", "monitor.min_requests=20")
    assert proc.returncode in (0, 1), proc.stderr
    psi = json.loads(proc.stdout)["detectors"]["prediction_psi"]
    assert len(psi["detail"]["reference_shares"]) == 10 and sum(
        psi["detail"]["recent_shares"].values()
    ) == pytest.approx(1, abs=1e-3)


def test_the_report_shows_the_residuals_of_base_and_tuned(scored_run, tmp_path):
    run, _ = scored_run
    proc = tunesmith("report", run, "--out", tmp_path / "report.html")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Residuals (test set, by true value)</h2>" in html and "tuned MAE" in html
    assert "data:image/png;base64" in html.split("<h2>Residuals")[1]


def test_numbers_sent_as_feedback_retune_a_new_version_judged_on_rmse(scored_run, tmp_path):
    from tests.e2e.served import Server

    run, _ = scored_run
    with (ROOT / "data/vader-movies/train.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[300:330]  # never trained on
    served = Server([f"sentiment={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            items = client.post("/v1/score", json={"input": [r["text"] for r in rows]}).json()["data"]
            for item, row in zip(items, rows, strict=True):
                response = client.post("/v1/feedback", json={"id": item["id"], "label": row["sentiment"]})
                assert response.status_code == 200, response.text
    finally:
        served.stop()
    proc = tunesmith("retune", run, "--json", "retune.tolerance=1", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["comparison"]["metric"] == "rmse" and decision["data"]["corrections_used"] >= 30
    train = (run / "versions" / f"{decision['version']}-data" / "train.jsonl").read_text().splitlines()
    assert json.loads(train[-1])["sentiment"] == pytest.approx(float(rows[-1]["sentiment"]))
