"""An embedding run as users meet it: trained on the shipped retrieval pairs, exported to the formats its users
load (sentence-transformers, ONNX) and read back by those libraries themselves, and served on /v1/embeddings
to the official OpenAI client, which must get the run's own vectors."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from tests.e2e.served import API_KEY, FAST_EVALUATION, Server
from tunesmith.config import build_config
from tunesmith.evaluation.forgetting import reference_sentences
from tunesmith.inference import load_run
from tunesmith.recipes.export import export_run
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import embed_texts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["lightweight DNS forwarder and DHCP server", "library for parsing XML documents", "short"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("embedding")
    files = {}
    for split, n in (("train", 64), ("validation", 24), ("test", 32)):
        lines = (ROOT / "data/debian-retrieval" / f"{split}.jsonl").read_text().splitlines()[:n]
        files[split] = tmp / f"{split}.jsonl"
        files[split].write_text("\n".join(lines) + "\n")
    tree = {
        "task": {"name": "embedding", "matryoshka_dims": [128]},
        "model": {"name": "minilm", "max_length": 128},
        "data": {k: str(v) for k, v in files.items()},
        "method": {"name": "lora", "rank": 4},
        "train": {"epochs": 1, "batch_size": 16, "keep": "tuned"},
        "evaluation": FAST_EVALUATION,
        "output_dir": str(tmp / "run"),
    }
    finetune(build_config(tree), Console(file=io.StringIO()))
    return tmp / "run"


def run_vectors(run: Path, texts: list[str]) -> torch.Tensor:
    return embed_texts(load_run(run), texts)


def test_the_run_reports_retrieval_base_vs_tuned_with_intervals_and_its_pooling(run: Path) -> None:
    report = json.loads((run / "eval.json").read_text())
    for metric in ("ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10"):
        assert 0 <= report["base"][metric] <= 1 and 0 <= report["tuned"][metric] <= 1
        assert metric in report["interval"]
    assert report["tuned"]["corpus_size"] == 32
    state = json.loads((run / "task.json").read_text())
    assert (state["pooling"], state["normalize"]) == ("mean", True)


def test_sentence_transformers_loads_the_export_and_encodes_as_the_run(run: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    result = export_run(run, tmp_path / "st", "sentence-transformers")
    assert result.comparison.ok and result.comparison.max_abs_diff < 1e-4
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu", local_files_only=True)
    theirs = model.encode(TEXTS, convert_to_tensor=True)  # Normalize is in the exported pipeline
    assert torch.allclose(theirs.cpu(), run_vectors(run, TEXTS), atol=1e-5)
    assert torch.allclose(theirs.norm(dim=-1).cpu(), torch.ones(len(TEXTS)), atol=1e-5)


def test_onnx_runtime_gives_the_runs_vectors(run: Path, tmp_path: Path) -> None:
    import onnxruntime
    from transformers import AutoTokenizer

    export_run(run, tmp_path / "onnx", "onnx")
    session = onnxruntime.InferenceSession(
        str(tmp_path / "onnx/model.onnx"), providers=["CPUExecutionProvider"]
    )
    batch = AutoTokenizer.from_pretrained(tmp_path / "onnx")(TEXTS, padding=True, return_tensors="np")
    (vectors,) = session.run(["embeddings"], {k: batch[k] for k in ("input_ids", "attention_mask")})
    assert np.allclose(vectors, run_vectors(run, TEXTS).numpy(), atol=1e-4)


def test_openai_client_gets_the_runs_vectors_in_both_encodings_and_matryoshka_dimensions(
    run: Path, tmp_path: Path
) -> None:
    import openai

    served = Server([f"faq={run}"], tmp_path / "server")
    try:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY)
        expected = run_vectors(run, TEXTS)
        got = client.embeddings.create(model="faq", input=TEXTS)  # the client asks for base64 by default
        assert [d.index for d in got.data] == [0, 1, 2]
        assert np.allclose(np.array([d.embedding for d in got.data]), expected.numpy(), atol=1e-6)
        assert got.usage.prompt_tokens > len(TEXTS)
        floats = client.embeddings.create(model="faq", input=TEXTS[0], encoding_format="float")
        assert np.allclose(floats.data[0].embedding, expected[0].numpy(), atol=1e-6)
        cut = client.embeddings.create(model="faq", input=TEXTS[0], dimensions=128, encoding_format="float")
        short = np.array(cut.data[0].embedding)
        assert short.shape == (128,) and abs(np.linalg.norm(short) - 1) < 1e-5
        assert np.allclose(short, torch.nn.functional.normalize(expected[0, :128], dim=0).numpy(), atol=1e-6)
        with served.client() as http:
            raw = http.post("/v1/embeddings", json={"input": TEXTS[1], "encoding_format": "base64"}).json()
            decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
            assert np.allclose(decoded, expected[1].numpy(), atol=1e-6)
            too_wide = http.post("/v1/embeddings", json={"input": "x", "dimensions": 4096})
            assert too_wide.status_code == 422 and "384" in too_wide.json()["error"]["message"]
            wrong = http.post("/v1/classify", json={"input": "x"})
            assert wrong.status_code == 400 and "/v1/embeddings" in wrong.json()["error"]["message"]
            card = http.get("/v1/models").json()["data"][0]
            assert card["endpoint"] == "POST /v1/embeddings" and card["dimensions"] == 384
            client.embeddings.create(model="faq", input=reference_sentences()[:40])  # everyday English
    finally:
        served.stop()
    with sqlite3.connect(run / "requests.db") as db:  # every text logged, for drift monitoring
        rows = db.execute("SELECT endpoint FROM requests").fetchall()
    assert len(rows) == 3 + 1 + 1 + 1 + 40 and {r[0] for r in rows} == {"embeddings"}
    # queries about bread and trains against a model tuned on package searches: the monitor sees the shift
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith", "monitor", str(run), "--json"], capture_output=True, text=True
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["status"] == "drift", proc.stderr[-2000:]
    assert report["requests"] == 46 and report["detectors"]["domain_classifier_auc"]["alert"]


def test_the_onnx_engine_serves_the_runs_vectors(run: Path, tmp_path: Path) -> None:
    served = Server([f"faq={run}"], tmp_path / "server", "--engine", "onnx", start_seconds=300)
    try:
        with served.client() as http:
            card = http.get("/v1/models").json()["data"][0]
            got = http.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "float"}).json()
            cut = http.post("/v1/embeddings", json={"input": TEXTS[0], "dimensions": 128}).json()
    finally:
        served.stop()
    assert card["engine"] == "ONNX Runtime" and card["dimensions"] == 384
    vectors = np.array([d["embedding"] for d in got["data"]])
    assert np.allclose(vectors, run_vectors(run, TEXTS).numpy(), atol=1e-4)
    short = np.array(cut["data"][0]["embedding"])
    assert short.shape == (128,) and abs(np.linalg.norm(short) - 1) < 1e-5
