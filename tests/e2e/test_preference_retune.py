"""From feedback to a preference-tuned version: a served LoRA SmolLM2 chat run's logged answers, corrected
(better answers: DPO pairs against what the model said) and rated (thumbs: KTO labels), become the data of
`tunesmith retune RUN --objective dpo`, which tunes the serving version's own weights and judges both versions
on the held-out pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import chat_rows
from tests.e2e.served import API_KEY, Server, assert_answers_as_the_run, chat_run
from tests.e2e.test_cli import tunesmith
from tunesmith.inference import load_run
from tunesmith.monitoring.feedback_records import preference_records, split_records
from tunesmith.monitoring.request_log import RequestLog, default_url, encode_row

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_bot(tmp_path_factory) -> Path:
    return chat_run(tmp_path_factory.mktemp("bot") / "bot")


def copy_of(run: Path, tmp: Path) -> Path:
    shutil.copytree(run, tmp / "run")
    return tmp / "run"


def log_answers_and_corrections(run, n: int) -> list[dict]:
    """The run answers n held-out questions (as the server would log them); each gets the shipped answer as
    its correction, and every other one a thumbs down too."""
    trained = load_run(run)
    log = RequestLog(default_url(run))
    chats = [json.loads(line)["messages"] for line in chat_rows("test", n)]
    for i, chat in enumerate(chats):
        prompt = chat[:-1]
        answer = trained.task.answer(trained.model, prompt, trained.pad_id)
        log.record(
            encode_row(
                request_id=f"chatcmpl-{i}",
                run=run,
                model="bot",
                version="v1",
                endpoint="chat",
                input=prompt,
                output=answer,
                latency_ms=1.0,
            )
        )
        log.flush()
        log.add_feedback(f"chatcmpl-{i}", None, chat[-1]["content"], None)
        if i % 2:
            log.add_feedback(f"chatcmpl-{i}", None, None, None, rating="down")
    feedback = log.corrections(run)
    log.close()
    return feedback


def test_corrections_become_dpo_pairs_and_retune_tunes_the_serving_version_on_them(trained_bot, tmp_path):
    run = copy_of(trained_bot, tmp_path)
    feedback = log_answers_and_corrections(run, 10)
    pairs = preference_records(feedback, "dpo")
    assert len(pairs) == 10 and all(r["chosen"] != r["rejected"] for _, r in pairs)
    request, first = pairs[0]
    logged = next(r for r in feedback if r["id"] == request)
    assert first == {
        "prompt": logged["input"],
        "chosen": logged["correct_answer"],
        "rejected": logged["output"],
    }
    labelled = preference_records(
        feedback, "kto"
    )  # each correction: the better answer up, the given one down
    assert [r["label"] for _, r in labelled].count(True) == 10 and len(labelled) == 20
    train, test = split_records(labelled, 0.2, "kto")
    train_prompts = {json.dumps(r["prompt"]) for r in train}
    assert test and not any(json.dumps(r["prompt"]) in train_prompts for r in test)  # a request on one side

    proc = tunesmith(
        "retune",
        run,
        "--objective",
        "dpo",
        "--json",
        "train.epochs=2",
        "train.learning_rate=1e-3",
        "retune.tolerance=1",
        "evaluation.forgetting=false",
        "task.eval_generate_examples=0",
    )
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    comparison = decision["comparison"]
    assert decision["version"] == "v2" and decision["promoted"] and comparison["metric"] == "reward_margin"
    assert decision["data"]["train_examples"] + decision["data"]["test_examples"] == 10
    # tuned on the pairs, the new version prefers the held-out better answers more than the serving one does
    assert comparison["candidate"] > comparison["serving"] and "interval" in comparison
    config = yaml.safe_load((run / "versions" / "v2" / "config.yaml").read_text())
    assert config["task"]["name"] == "preference" and config["task"]["loss"] == "dpo"
    assert Path(config["train"]["init_from"]).resolve() == run.resolve()  # it refines the serving version
    train_pairs = [
        json.loads(x) for x in (run / "versions" / "v2-data" / "train.jsonl").read_text().splitlines()
    ]
    assert {"prompt", "chosen", "rejected"} == set(train_pairs[0])

    # the promoted preference version serves: the official openai client gets its own greedy answers
    from openai import OpenAI

    served = Server([f"bot={run}"], tmp_path / "server")
    try:
        assert httpx.get(f"{served.url}/health").json()["models"]["bot"]["version"] == "v2"
        client = OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY)
        messages = [{"role": "user", "content": "What is htop?"}]
        assert_answers_as_the_run(client, "bot", messages, run / "versions" / "v2")
    finally:
        served.stop()

    # retune --objective sft of the preference version: its own pairs plus the corrections, as pairs
    proc = tunesmith(
        "retune",
        run,
        "--objective",
        "sft",
        "--json",
        "train.epochs=1",
        "retune.promote=never",
        "evaluation.forgetting=false",
        "task.eval_generate_examples=0",
    )
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["version"] == "v3" and decision["comparison"]["metric"] == "reward_accuracy"
    assert decision["data"]["corrections_used"] + decision["data"]["corrections_in_held_out"] == 10
    retrained = [
        json.loads(x) for x in (run / "versions" / "v3-data" / "train.jsonl").read_text().splitlines()
    ]
    assert retrained and all({"prompt", "chosen", "rejected"} == set(r) for r in retrained)


def test_a_preference_objective_on_too_little_feedback_is_refused_with_what_to_collect(trained_bot, tmp_path):
    run = copy_of(trained_bot, tmp_path)
    log_answers_and_corrections(run, 2)
    proc = tunesmith("retune", run, "--objective", "dpo")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 usable records from 2 requests; it needs at least 5" in proc.stderr + proc.stdout
