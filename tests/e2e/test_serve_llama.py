"""`tunesmith serve --engine llama.cpp`: a chat run's answers written by llama.cpp from the run's GGUF export,
over real HTTP with the official OpenAI client, next to a classifier that stays on torch. The export is made
and checked at start, kept in the version folder, reused on restart, and made for a promoted version on the
switch."""

from __future__ import annotations

import shutil
import signal

import pytest

from tests.conftest import needs_llama_cpp
from tests.e2e.served import API_KEY, Server, assert_answers_as_the_run, chat_run, classifier_run
from tests.e2e.test_cli import tunesmith
from tunesmith.inference import load_run
from tunesmith.recipes.predict import predict_texts
from tunesmith.versions import Deployment

pytestmark = [
    pytest.mark.slow,
    needs_llama_cpp,
]
QUESTION = [{"role": "user", "content": "How do I list the files a Debian package installed?"}]
TEXTS = ["Development headers for the XML parsing library", "Lightweight DNS forwarder and DHCP server"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-llama")
    return {
        "bot": chat_run(tmp / "bot"),
        "tickets": classifier_run(tmp / "tickets", ("doc", "libdevel", "net"), train=60),
        "tmp": tmp,
    }


@pytest.fixture(scope="module")
def server(runs):
    served = Server(
        [f"bot={runs['bot']}", f"tickets={runs['tickets']}"],
        runs["tmp"] / "server",
        "--engine",
        "llama.cpp",
        start_seconds=400,  # the first start exports and checks the GGUF
    )
    yield served
    if served.process.poll() is None:
        served.stop()


def test_llama_cpp_writes_the_runs_own_answers_whole_streamed_and_cut_at_a_stop(server, runs):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
    cards = {card.id: card for card in client.models.list().data}
    assert cards["bot"].engine == "llama.cpp (f16 GGUF)" and cards["tickets"].engine == "torch"
    assert "bot: chat (lora on smollm2-135m-instruct), version v1; answers from llama.cpp (f16 GGUF)" in (
        server.output.read_text()
    )

    reply = assert_answers_as_the_run(client, "bot", QUESTION, runs["bot"])  # f16: token for token

    sampled = [
        client.chat.completions.create(
            model="bot", messages=QUESTION, temperature=1.2, seed=seed, max_tokens=24
        )
        .choices[0]
        .message.content
        for seed in (7, 7, 8)
    ]
    assert sampled[0] == sampled[1] and len(set(sampled)) == 2  # a seed repeats its answer, another differs

    with server.client() as http:
        assert (
            http.post("/v1/feedback", json={"id": reply.id, "answer": "dpkg -L PACKAGE"}).status_code == 200
        )
        classified = http.post("/v1/classify", json={"model": "tickets", "input": TEXTS}).json()
    expected = predict_texts(load_run(runs["tickets"]), TEXTS)  # the classifier stays on torch
    assert [d["label"] for d in classified["data"]] == [r[0][0] for r in expected]


def test_the_export_is_reused_a_long_talk_is_refused_and_a_promoted_version_is_exported(
    server, runs, tmp_path
):
    from openai import BadRequestError, OpenAI

    copy = tmp_path / "bot"
    shutil.copytree(runs["bot"], copy, ignore=shutil.ignore_patterns("requests.db*"))
    v2 = copy / "versions" / "v2"
    shutil.copytree(runs["bot"], v2, ignore=shutil.ignore_patterns("requests.db*", "exports"))
    kept = copy / "exports" / "gguf-f16" / "model.gguf"
    written = kept.stat().st_mtime_ns
    settings = tmp_path / "serve.yaml"
    settings.write_text("engine: llama.cpp\ncontext_tokens: 48\nwatch_seconds: 3600\n")
    served = Server([f"bot={copy}"], tmp_path / "server", "--config", str(settings), start_seconds=400)
    try:
        assert kept.stat().st_mtime_ns == written  # the checked export of v1 was reused, not made again
        client = OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY)
        short = client.chat.completions.create(model="bot", messages=QUESTION)
        assert short.usage.total_tokens == 48 and short.choices[0].finish_reason == "length"
        longer = [{"role": "user", "content": QUESTION[0]["content"] * 3}]
        with pytest.raises(BadRequestError) as refused:
            client.chat.completions.create(model="bot", messages=longer)
        assert refused.value.code == "context_length_exceeded" and "context_tokens" in refused.value.message

        Deployment(copy).serve("v2", "test")
        served.process.send_signal(signal.SIGHUP)
        served.wait_for_version("bot", "v2", timeout=400)
        assert (v2 / "exports" / "gguf-f16" / "tunesmith_export.json").is_file()
        again = client.chat.completions.create(model="bot", messages=QUESTION)
        assert (
            again.system_fingerprint == "bot@v2"
            and again.choices[0].message.content == short.choices[0].message.content
        )
    finally:
        served.stop()
    assert "Traceback" not in served.output.read_text()


def test_engine_settings_are_refused_before_anything_loads(runs):
    result = tunesmith("serve", runs["tickets"], "--no-auth", "--quant", "q8_0")
    assert result.returncode == 2 and "--quant is for --engine llama.cpp" in result.stderr
    result = tunesmith("serve", runs["tickets"], "--no-auth", "--engine", "llama.cpp", "--quant", "q3")
    assert result.returncode == 2 and "unknown --quant 'q3'" in result.stderr
    result = tunesmith("serve", runs["tickets"], "--no-auth", "--engine", "vllm")
    assert result.returncode == 2 and "engine" in result.stderr
