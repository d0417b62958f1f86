"""A cross-encoder end to end on real pairs (data/debian-pairs, a slice: does this description belong to this
synopsis?): trained on both texts together; predict takes TEXT<tab>PAIR; /v1/classify takes `text_pair`; the
ONNX export takes token_type_ids and gives predict's probabilities; merged is refused with the fix; drift
compares the answers to pairs."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shipped_slices
from tests.e2e.test_cli import assert_user_error, train_cli, tunesmith

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    (
        "Maven XMLBeans Plugin",
        "Maven plugin which parses xsd files and produces a corresponding object model.",
    ),
    ("Maven XMLBeans Plugin", "A board game for two players, with a computer opponent."),
]


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairs")
    data = shipped_slices("debian-pairs", tmp, {"train": 320, "validation": 80, "test": 80})
    run = tmp / "run"
    proc = train_cli(
        run, data, "minilm", "lora", "task.text_column=synopsis", "task.text_pair_column=description",
        "model.max_length=96", "train.epochs=2", "train.batch_size=16", "train.learning_rate=0.002",
        "evaluation.forgetting=false", "train.estimate=never",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, data


def predicted(run: Path) -> list[dict]:
    proc = tunesmith("predict", run, "--json", *(f"{a}\t{b}" for a, b in PAIRS))
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_pair_model_learns_what_the_probe_on_the_pair_cannot(pair_run):
    run, _ = pair_run
    report = json.loads((run / "eval.json").read_text())
    assert report["tuned"]["macro_f1"] > report["base"]["macro_f1"]
    rows = predicted(run)
    assert [r["pair"] for r in rows] == [b for _, b in PAIRS] and rows[0]["text"] == PAIRS[0][0]
    assert rows[0]["probabilities"]["match"] > rows[1]["probabilities"]["match"]


def test_the_server_takes_text_pair_and_answers_as_predict(pair_run, tmp_path):
    from tests.e2e.served import Server

    run, data = pair_run
    expected = predicted(run)
    with data["test"].open(encoding="utf-8", newline="") as handle:
        traffic = list(csv.DictReader(handle))[:30]
    since = datetime.now(timezone.utc).isoformat()
    served = Server([f"match={run}"], tmp_path / "server")
    try:
        with served.client() as client:
            body = {"input": [a for a, _ in PAIRS], "text_pair": [b for _, b in PAIRS]}
            response = client.post("/v1/classify", json=body)
            assert response.status_code == 200, response.text
            for item, row in zip(response.json()["data"], expected, strict=True):
                scores = {s["label"]: s["score"] for s in item["scores"]}
                assert scores == pytest.approx(row["probabilities"], abs=1e-4)
            alone = client.post("/v1/classify", json={"input": "Maven XMLBeans Plugin"})
            assert alone.status_code == 422 and "text_pair" in alone.text
            batch = {
                "input": [r["synopsis"] for r in traffic],
                "text_pair": [r["description"] for r in traffic],
            }
            assert client.post("/v1/classify", json=batch).status_code == 200
    finally:
        served.stop()
    proc = tunesmith("monitor", run, "--since", since, "--json", "monitor.min_requests=20")
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["requests"] == 32 and set(
        report["detectors"]["prediction_psi"]["detail"]["reference_shares"]
    ) == {
        "match",
        "other",
    }


def test_onnx_takes_token_type_ids_and_merged_is_refused_with_the_fix(pair_run, tmp_path):
    import onnxruntime
    from transformers import AutoTokenizer

    run, _ = pair_run
    proc = tunesmith("export", run, "--format", "onnx", "--out", tmp_path / "onnx")
    assert proc.returncode == 0, proc.stderr
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")
    enc = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="np")
    (logits,) = session.run(None, {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = json.loads((tmp_path / "onnx" / "config.json").read_text())["id2label"]
    for row, expected in zip(probs, predicted(run), strict=True):
        assert {labels[str(i)]: float(p) for i, p in enumerate(row)} == pytest.approx(
            expected["probabilities"], abs=1e-4
        )
    merged = tunesmith("export", run, "--format", "merged", "--out", tmp_path / "merged")
    assert_user_error(merged, "export --format onnx (it takes token_type_ids)")
    assert not (tmp_path / "merged").exists()
