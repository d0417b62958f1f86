"""`tunesmith serve` as users meet it: a real server process on localhost, real HTTP, the official OpenAI
client, real models (two LoRA MiniLM classifiers sharing one base, a LoRA SmolLM2 chat model)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time

import httpx
import pytest

from tests.e2e.hostile import CASES, idle_connection, send_raw
from tests.e2e.served import ADMIN_KEY, API_KEY, Server, assert_answers_as_the_run, chat_run, classifier_run
from tunesmith.inference import load_run
from tunesmith.recipes.predict import predict_texts

pytestmark = pytest.mark.slow

TEXTS = [
    "Documentation and examples for the GNU C library",
    "Development headers for the XML parsing library",
    "Lightweight DNS forwarder and DHCP server",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    return {
        "tickets": classifier_run(tmp / "tickets", ("doc", "libdevel", "net")),
        "other": classifier_run(tmp / "other", ("admin", "utils", "text"), train=60),
        "bot": chat_run(tmp / "bot"),
        "tmp": tmp,
    }


@pytest.fixture(scope="module")
def server(runs):
    served = Server(
        [f"tickets={runs['tickets']}", f"other={runs['other']}", f"bot={runs['bot']}"], runs["tmp"] / "server"
    )
    yield served
    if served.process.poll() is None:
        served.stop()


def test_models_are_listed_and_the_adapters_share_one_base(server):
    with server.client() as client:
        listing = client.get("/v1/models").json()
    cards = {card["id"]: card for card in listing["data"]}
    assert set(cards) == {"tickets", "other", "bot"}
    assert cards["tickets"]["shares_base_with"] == ["other"] and cards["bot"]["shares_base_with"] == []
    assert cards["tickets"]["labels"] == ["doc", "libdevel", "net"]
    assert cards["bot"]["endpoint"] == "POST /v1/chat/completions"


def test_classify_answers_as_the_run_itself_for_both_adapters_on_the_shared_base(server, runs):
    with server.client() as client:
        answers = {
            name: client.post("/v1/classify", json={"model": name, "input": TEXTS}).json()
            for name in ("tickets", "other", "tickets")  # switching back and forth between adapters
        }
    for name in ("tickets", "other"):
        expected = predict_texts(load_run(runs[name]), TEXTS)
        for item, ranked in zip(answers[name]["data"], expected, strict=True):
            assert item["label"] == ranked[0][0]
            served = {s["label"]: s["score"] for s in item["scores"]}
            for label, p in ranked:
                assert served[label] == pytest.approx(p, abs=1e-4)
    assert answers["tickets"]["version"] == "v1" and answers["tickets"]["data"][0]["id"].startswith("cls-")


def test_official_openai_client_chats_streams_and_stops(server, runs):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
    messages = [{"role": "user", "content": "How do I list the files a Debian package installed?"}]
    reply = assert_answers_as_the_run(client, "bot", messages, runs["bot"])
    with server.client() as http:
        correction = {"id": reply.id, "answer": "dpkg -L PACKAGE lists them."}
        assert http.post("/v1/feedback", json=correction).status_code == 200
        assert http.post("/v1/feedback", json={"id": reply.id, "label": "doc"}).status_code == 422
        assert http.post("/v1/feedback", json={"id": reply.id, "rating": "down"}).status_code == 200
        assert http.post("/v1/feedback", json={"id": reply.id, "rating": "meh"}).status_code == 422


QUESTIONS = [
    "How do I list the files a Debian package installed?",
    "What is apt?",
    "Which package gives me a C compiler, and how do I install it on a fresh Debian machine?",
    "What does dpkg do?",
]


def test_concurrent_chats_decode_together_and_answer_as_each_alone(server):
    """16 chats of mixed lengths and settings at once: the answers one at a time, and shared decode steps."""
    bodies = []
    for i in range(16):
        body = {
            "model": "bot",
            "messages": [{"role": "user", "content": QUESTIONS[i % 4] + " Please." * (i // 4)}],
            "max_tokens": 4 + (5 * i) % 13,
            "temperature": 0,
        }
        if i % 5 == 1:
            body.update(temperature=0.8, top_p=0.9, seed=i)  # seeded sampling: the same answer in a batch
        if i % 7 == 3:
            body["stop"] = [" the"]
        bodies.append(body)

    def answer(response: httpx.Response) -> tuple[str, str]:
        choice = response.json()["choices"][0]
        return choice["message"]["content"], choice["finish_reason"]

    with server.client() as client:
        alone = [answer(client.post("/v1/chat/completions", json=body)) for body in bodies]
        before = client.get("/metrics").text

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
            return await asyncio.gather(*[c.post("/v1/chat/completions", json=body) for body in bodies])

    together = [answer(r) for r in asyncio.run(burst())]
    assert together == alone
    with server.client() as client:
        after = client.get("/metrics").text

    def steps(metrics: str) -> tuple[float, float]:
        found = [
            float(re.search(rf'tunesmith_batch_inputs_{k}\{{model="bot"\}} (\S+)', metrics).group(1))
            for k in ("count", "sum")
        ]
        return found[0], found[1]

    (count0, rows0), (count1, rows1) = steps(before), steps(after)
    assert (rows1 - rows0) / (count1 - count0) > 3  # rows per decode step: the chats shared forward passes


def test_keys_are_required_and_checked(server):
    from openai import AuthenticationError, OpenAI

    assert httpx.get(f"{server.url}/health").status_code == 200
    for key in (None, "wrong-key-0123456789abcdef", API_KEY[:-1]):
        with server.client(key) as client:
            response = client.post("/v1/classify", json={"model": "tickets", "input": "x y"})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert client.get("/metrics").status_code == 401
            bad = client.post(
                "/v1/classify", content=b"{not json", headers={"Content-Type": "application/json"}
            )
            assert bad.status_code == 401  # the key is checked before the body
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{server.url}/v1", api_key="wrong").models.list()
    with server.client(API_KEY) as client:  # a client key is not an admin key
        assert client.post("/v1/admin/reload").status_code == 401
    with server.client(ADMIN_KEY) as client:
        assert client.post("/v1/admin/reload").json() == {"changed": []}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 422, "invalid_body"),
        (json.dumps({"model": "tickets", "input": 42}).encode(), 422, "invalid_body"),
        (json.dumps({"model": "tickets", "input": ["ok", 3]}).encode(), 422, "invalid_body"),
        (json.dumps({"model": "tickets"}).encode(), 422, "invalid_body"),
        (json.dumps({"input": "x"}).encode(), 422, "invalid_body"),  # several served: say which
        (json.dumps({"model": "tickets", "input": []}).encode(), 422, "invalid_body"),
        (json.dumps({"model": "tickets", "input": "  "}).encode(), 422, "invalid_body"),
        (json.dumps({"model": "tickets", "input": "x", "top_k": "2"}).encode(), 422, "invalid_body"),
        (json.dumps({"model": "../tickets/run", "input": "x"}).encode(), 404, "model_not_found"),
        (json.dumps({"model": "bot", "input": "x"}).encode(), 400, "wrong_endpoint"),
        (json.dumps({"model": "tickets", "input": "x" * 20_001}).encode(), 413, "input_too_long"),
        (json.dumps({"model": "tickets", "input": ["x"] * 257}).encode(), 413, "too_many_inputs"),
        (json.dumps({"model": "tickets", "input": "x" * 1_100_000}).encode(), 413, "body_too_large"),
    ],
)
def test_bad_classify_input_is_a_4xx_with_a_message(server, body, status, code):
    with server.client() as client:
        response = client.post("/v1/classify", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_bad_chat_and_feedback_input_is_a_4xx(server):
    with server.client() as client:
        bad_role = {"model": "bot", "messages": [{"role": "robot", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=bad_role).status_code == 422
        assert client.post("/v1/chat/completions", json={"model": "bot", "messages": []}).status_code == 422
        two = {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "n": 2}
        assert client.post("/v1/chat/completions", json=two).status_code == 422
        hot = {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "temperature": 5}
        assert client.post("/v1/chat/completions", json=hot).status_code == 422
        wrong = {"model": "tickets", "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=wrong).status_code == 400
        assert client.post("/v1/feedback", json={"id": "nope", "label": "doc"}).status_code == 404
        both = {"id": "x", "label": "doc", "answer": "y"}
        assert client.post("/v1/feedback", json=both).status_code == 422
        item = client.post("/v1/classify", json={"model": "tickets", "input": TEXTS[0]}).json()["data"][0]
        unknown = client.post("/v1/feedback", json={"id": item["id"], "label": "games"})
        assert unknown.status_code == 422 and "doc, libdevel, net" in unknown.json()["error"]["message"]
        assert client.post("/v1/feedback", json={"id": item["id"], "answer": "text"}).status_code == 422
        assert client.post("/v1/feedback", json={"id": item["id"], "rating": "up"}).status_code == 422
        chunked = client.post(
            "/v1/classify",
            content=iter([b'{"model": "tickets", ', b'"input": "x"}']),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 411
        metrics = client.get("/metrics").text
    assert not re.search(r'status="5\d\d"', metrics)


def test_a_burst_of_200_concurrent_requests_is_batched_and_fully_logged(server, runs):
    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120, limits=limits) as c:
            calls = [
                c.post(
                    "/v1/classify",
                    json={"model": "tickets" if i % 2 else "other", "input": f"{TEXTS[i % 3]} {i}"},
                )
                for i in range(200)
            ]
            return await asyncio.gather(*calls)

    started = time.perf_counter()
    responses = asyncio.run(burst())
    seconds = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * 200
    assert seconds < 90
    ids = {r.json()["data"][0]["id"] for r in responses}
    with server.client() as client:
        metrics = client.get("/metrics").text
    batches = sum(
        float(m)
        for m in re.findall(r'tunesmith_batch_inputs_count\{model="(?:tickets|other)"\} (\S+)', metrics)
    )
    assert 0 < batches < 150  # dynamic batching put several requests in one forward pass
    deadline = time.time() + 20
    while time.time() < deadline:
        logged = set()
        for name in ("tickets", "other"):
            with sqlite3.connect(runs[name] / "requests.db") as db:
                logged |= {r[0] for r in db.execute("SELECT id FROM requests")}
        if ids <= logged:
            break
        time.sleep(0.2)
    assert ids <= logged


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_request_fails_alone_inside_a_burst_of_good_ones(server, runs, case):
    host, port = server.url.removeprefix("http://").split(":")
    expected = predict_texts(load_run(runs["tickets"]), TEXTS)

    async def burst() -> tuple[int | None, list[httpx.Response]]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
            good = [c.post("/v1/classify", json={"model": "tickets", "input": TEXTS}) for _ in range(4)]
            bad = send_raw(host, int(port), case)
            idle = idle_connection(host, int(port), 0.5)
            status, _, *answers = await asyncio.gather(bad, idle, *good)
            return status, answers

    status, answers = asyncio.run(burst())
    assert status in case.expected, f"{case.name}: {status}"
    for response in answers:
        assert response.status_code == 200, response.text
        assert [item["label"] for item in response.json()["data"]] == [r[0][0] for r in expected]


def test_no_hostile_request_was_a_server_fault(server):
    with server.client() as client:
        metrics = client.get("/metrics").text
    assert not re.search(r'status="5\d\d"', metrics)
    assert "Traceback" not in server.output.read_text()


def test_a_restart_keeps_the_log_and_feedback_finds_old_requests(server, runs):
    with server.client() as client:
        item = client.post("/v1/classify", json={"model": "tickets", "input": TEXTS[1]}).json()["data"][0]
    assert server.stop() in (0, -15)  # uvicorn shuts down gracefully, then re-raises SIGTERM
    assert re.search(r"stopped; \d+ requests logged since start\n", server.output.read_text())
    assert "Traceback" not in server.output.read_text()
    with sqlite3.connect(runs["tickets"] / "requests.db") as db:
        row = db.execute(
            "SELECT model, version, endpoint, confidence FROM requests WHERE id = ?", (item["id"],)
        )
        assert row.fetchone() == ("tickets", "v1", "classify", pytest.approx(item["confidence"]))
    server.start()
    with server.client() as client:
        response = client.post(
            "/v1/feedback", json={"id": item["id"], "label": "libdevel", "note": "dev package"}
        )
    assert response.status_code == 200 and response.json()["request_id"] == item["id"]


def test_sighup_swaps_a_version_on_a_shared_base_and_settings_come_from_yaml(runs, tmp_path):
    import shutil
    import signal

    from tunesmith.versions import Deployment

    copy = tmp_path / "other"
    shutil.copytree(runs["other"], copy, ignore=shutil.ignore_patterns("requests.db*"))
    shutil.copytree(runs["other"], copy / "versions" / "v2", ignore=shutil.ignore_patterns("requests.db*"))
    settings = tmp_path / "serve.yaml"
    settings.write_text("watch_seconds: 3600\nbatch_size: 4\nmax_input_chars: 100\n")  # only SIGHUP swaps now
    served = Server(
        [f"tickets={runs['tickets']}", f"other={copy}"], tmp_path / "server", "--config", str(settings)
    )
    try:
        with served.client() as client:
            before = client.post("/v1/classify", json={"model": "other", "input": TEXTS}).json()
            assert client.post("/v1/classify", json={"model": "other", "input": "x" * 101}).status_code == 413
        Deployment(copy).serve("v2", "test")
        served.process.send_signal(signal.SIGHUP)
        served.wait_for_version("other", "v2", timeout=30)
        with served.client() as client:
            after = client.post("/v1/classify", json={"model": "other", "input": TEXTS}).json()
            tickets = client.post("/v1/classify", json={"model": "tickets", "input": TEXTS}).json()
        assert after["version"] == "v2"
        for a, b in zip(before["data"], after["data"], strict=True):  # v2 is a copy: the same answers
            assert a["label"] == b["label"] and a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
        expected = predict_texts(load_run(runs["tickets"]), TEXTS)
        assert [d["label"] for d in tickets["data"]] == [r[0][0] for r in expected]
    finally:
        served.stop()


def test_with_one_model_served_a_request_may_leave_out_the_model(runs, tmp_path):
    served = Server([f"tickets={runs['tickets']}"], tmp_path / "server")
    try:
        with served.client() as client:
            answer = client.post("/v1/classify", json={"input": TEXTS})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "tickets"
        expected = predict_texts(load_run(runs["tickets"]), TEXTS)
        assert [d["label"] for d in answer.json()["data"]] == [r[0][0] for r in expected]
    finally:
        served.stop()
