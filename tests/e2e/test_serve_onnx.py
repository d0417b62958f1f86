"""`tunesmith serve --engine onnx`: a classifier's answers computed by ONNX Runtime from the run's ONNX export,
over real HTTP, equal to the torch model's to 1e-4. The export is made and checked at start, kept in the
version folder and reused on restart; a burst of concurrent requests is batched as on torch."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.served import API_KEY, Server, classifier_run
from tunesmith.inference import load_run
from tunesmith.recipes.predict import predict_texts
from tunesmith.versions import Deployment

pytestmark = pytest.mark.slow
TEXTS = [
    "Development headers for the XML parsing library",
    "Lightweight DNS forwarder and DHCP server",
    "Documentation and examples for the GNU C library",
    "short",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return classifier_run(tmp_path_factory.mktemp("serve-onnx"), ("doc", "libdevel", "net"), train=60)


def test_onnx_runtime_serves_the_runs_own_scores_and_keeps_its_export(run, tmp_path):
    served = Server([f"tickets={run}"], tmp_path / "server", "--engine", "onnx", start_seconds=300)
    try:
        assert "answers from ONNX Runtime" in served.output.read_text()
        export = Deployment(run).current_folder() / "exports" / "onnx" / "model.onnx"
        made = export.stat().st_mtime
        with served.client() as client:
            card = client.get("/v1/models").json()["data"][0]
            answers = client.post("/v1/classify", json={"model": "tickets", "input": TEXTS}).json()["data"]
        assert card["engine"] == "ONNX Runtime"
        expected = predict_texts(load_run(run), TEXTS)
        for item, ranked in zip(answers, expected, strict=True):
            assert item["label"] == ranked[0][0]
            scores = {s["label"]: s["score"] for s in item["scores"]}
            for label, p in ranked:
                assert scores[label] == pytest.approx(p, abs=1e-4)

        async def burst() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=120) as c:
                calls = [c.post("/v1/classify", json={"input": TEXTS[i % 4]}) for i in range(48)]
                return await asyncio.gather(*calls)

        labels = [r.json()["data"][0]["label"] for r in asyncio.run(burst())]
        assert labels == [expected[i % 4][0][0] for i in range(48)]

        served.restart()  # the kept export is served again, not made anew
        assert export.stat().st_mtime == made
        with served.client() as client:
            again = client.post("/v1/classify", json={"input": TEXTS}).json()["data"]
        assert [a["scores"] for a in again] == [a["scores"] for a in answers]
    finally:
        served.stop()
