"""Text-writing tasks on real models: SmolLM2-135M-Instruct (chat, with LoRA), the packaged MiniLM (extractive
QA), and a tiny randomly initialised T5 built from a config with MiniLM's tokenizer (the seq2seq code path: no
seq2seq model ships in a package here)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tests.conftest import ROOT, chat_rows
from tunesmith.config import build_config
from tunesmith.data.chat_encoding import encode_chat, render_prompt
from tunesmith.errors import UserError
from tunesmith.inference import load_run
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import generate_answers
from tunesmith.recipes.prepare import prepare

pytestmark = pytest.mark.slow

GOLDEN = [
    {"role": "system", "content": "You are the Debian package helper. Answer in one short sentence."},
    {"role": "user", "content": "What is htop?"},
    {"role": "assistant", "content": "htop: interactive processes viewer."},
    {"role": "user", "content": "Which section of the archive is it in?"},
]


def quiet() -> Console:
    return Console(file=io.StringIO())


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def chat_config(tmp_path: Path, method: dict | None = None, **overrides) -> object:
    data = {
        "train": str(write_lines(tmp_path / "train.jsonl", chat_rows("train", 24))),
        "validation": str(write_lines(tmp_path / "val.jsonl", chat_rows("validation", 4))),
        "test": str(write_lines(tmp_path / "test.jsonl", chat_rows("test", 3))),
    }
    tree = {
        "task": {
            "name": "chat",
            "packing": True,
            "eval_generate_examples": 2,
            "generation": {"max_new_tokens": 12},
        },
        "model": {"name": "smollm2-135m-instruct", "max_length": 160},
        "data": data,
        "method": method or {"name": "lora", "rank": 8, "dropout": 0.0},
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 2e-3,
            "warmup_ratio": 0.0,
            "log_every_steps": 1,
            "early_stopping_patience": None,
            "eval_batch_size": 8,
        },
        "output_dir": str(tmp_path / "run"),
    }
    return build_config(tree, [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("chat")
    return tmp, finetune(chat_config(tmp), quiet())


def test_chat_lora_lowers_the_loss_and_beats_the_base_model(chat_run):
    tmp, result = chat_run
    events = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    validations = [e for e in events if e["event"] == "validation"]
    assert all({"rougeL", "bleu", "chrf", "perplexity"} <= set(e) for e in validations)
    report = json.loads((result.run / "eval.json").read_text())
    assert report["tuned"]["loss"] < report["base"]["loss"]
    assert report["tuned"]["generated"] == 3
    shown = report["examples"][0]
    assert {"prompt", "reference", "base", "tuned"} <= set(shown)
    forgetting = report["forgetting"]  # general ability, base vs tuned, on the shipped reference text
    assert 1 < forgetting["base_perplexity"] < 100 and forgetting["tuned_perplexity"] > 1
    assert forgetting["perplexity_increase"] == pytest.approx(
        forgetting["tuned_perplexity"] / forgetting["base_perplexity"] - 1
    )
    assert len(forgetting["prompts"]) == 3 and all(p["base"] and p["tuned"] for p in forgetting["prompts"])


def test_reloaded_chat_run_generates_what_the_trained_model_generated(chat_run):
    tmp, result = chat_run
    trained = load_run(result.run)
    # the run's best model is the last one here (loss falls every epoch): compare with the in-memory model
    messages = [{"role": "user", "content": "What is htop?"}]
    prompt = trained.task.prompt_ids(messages)
    in_memory = trained.task.generate_texts(result.model.eval(), [prompt], 1, trained.pad_id)
    assert generate_answers(trained, ["What is htop?"]) == in_memory
    assert in_memory[0]  # it says something


def test_prompt_rendered_at_inference_equals_the_training_rendering(chat_run):
    """Train-to-serve parity: the golden conversation's prompt, as training encoded it and as `predict`,
    `chat` and the server render it from the run folder, is the same text and the same tokens."""
    tmp, result = chat_run
    p = prepare(chat_config(tmp))
    conversation = [*GOLDEN, {"role": "assistant", "content": "htop is in the utils section."}]
    trained_ids = encode_chat(p.tokenizer, conversation, 512).input_ids
    trained = load_run(result.run)
    inference_text = render_prompt(trained.tokenizer, GOLDEN)
    inference_ids = trained.task.prompt_ids(GOLDEN)
    assert trained_ids[: len(inference_ids)] == inference_ids
    assert p.tokenizer.decode(trained_ids).startswith(inference_text)
    assert inference_text.endswith("<|im_start|>assistant\n")
    saved = json.loads((result.run / "task.json").read_text())
    assert saved["chat_template"] == trained.tokenizer.chat_template
    assert saved["stop_token_ids"] == [trained.tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_packed_and_padded_batches_give_the_same_loss(chat_run, smollm_model):
    tmp, _ = chat_run
    p = prepare(chat_config(tmp))
    features = p.train_features[:6]
    task = p.task
    task.prepare_model(smollm_model)
    assert task.pack
    with torch.inference_mode():
        packed = task.loss(smollm_model, task.collate(features, 2))
        task.pack = False
        padded = task.loss(smollm_model, task.collate(features, 2))
    assert packed[1] == padded[1] == sum(1 for f in features for label in f["labels"][1:] if label != -100)
    torch.testing.assert_close(packed[0], padded[0], rtol=1e-4, atol=1e-3)
    # and both equal the plain transformers loss (its own shift, every position through the output layer)
    batch = task.collate(features, 2)
    with torch.inference_mode():
        reference = smollm_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss
    torch.testing.assert_close(padded[0] / padded[1], reference, rtol=1e-4, atol=1e-4)


def test_an_answer_cut_off_by_max_length_is_an_error_naming_the_line(tmp_path):
    long_chat = json.loads(chat_rows("train", 1)[0])
    long_chat["messages"][1]["content"] = "Tell me everything about it. " * 60
    rows = chat_rows("train", 5)
    rows[3] = json.dumps(long_chat)
    cfg = chat_config(tmp_path, **{"data.train": str(write_lines(tmp_path / "long.jsonl", rows))})
    with pytest.raises(UserError, match=r"long.jsonl line 4: the answer is cut off"):
        prepare(cfg)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory, minilm_dir) -> Path:
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    folder = tmp_path_factory.mktemp("tiny-t5")
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=tok.vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_seq2seq_summarization_learns_and_reloads(tiny_t5_dir, tmp_path):
    lines = (ROOT / "data" / "debian-summaries" / "train.jsonl").read_text().splitlines()
    data = {
        "train": str(write_lines(tmp_path / "train.jsonl", lines[:32])),
        "validation": str(write_lines(tmp_path / "val.jsonl", lines[32:36])),
        "test": str(write_lines(tmp_path / "test.jsonl", lines[36:40])),
    }
    cfg = build_config(
        {
            "task": {"name": "summarization", "generation": {"max_new_tokens": 8}},
            "model": {"name": str(tiny_t5_dir), "max_length": 96},
            "data": data,
            "method": "full",
            "train": {
                "epochs": 3,
                "batch_size": 8,
                "learning_rate": 3e-3,
                "log_every_steps": 1,
                "warmup_ratio": 0.0,
                "early_stopping_patience": None,
                "metric": "loss",
            },
            "output_dir": str(tmp_path / "run"),
        }
    )
    result = finetune(cfg, quiet())
    losses = [
        e["loss"]
        for e in map(json.loads, (result.run / "metrics.jsonl").read_text().splitlines())
        if e["event"] == "train"
    ]
    assert losses[-1] < losses[0]
    trained = load_run(result.run)
    assert trained.task.encoder_decoder
    text = json.loads(lines[0])["document"]
    prompt = trained.task.prompt_ids(trained.task.messages_for_text(text))
    assert generate_answers(trained, [text]) == trained.task.generate_texts(
        result.model.eval(), [prompt], 1, 0
    )
    assert {"rouge1", "rouge2", "rougeL"} <= set(result.evaluation["tuned"])


def test_extractive_qa_on_minilm_finds_the_answer_span(tmp_path):
    qa = (ROOT / "data" / "debian-qa" / "train.jsonl").read_text().splitlines()[:90]
    train = write_lines(tmp_path / "qa.jsonl", qa)
    cfg = build_config(
        {
            "task": "qa",
            "model": {"name": "minilm", "max_length": 128},
            "data": {"train": str(train), "validation": str(train), "test": str(train)},
            "method": "full",
            "train": {"epochs": 5, "batch_size": 8, "learning_rate": 3e-4, "early_stopping_patience": None},
            "output_dir": str(tmp_path / "run"),
        }
    )
    result = finetune(cfg, quiet())
    tuned = result.evaluation["tuned"]
    assert tuned["f1"] > 0.6 and tuned["exact_match"] > 0.4, tuned
    trained = load_run(result.run)
    assert type(trained.task).__name__ == "ExtractiveQA"


def test_chat_cli_replies_as_predict_does_and_keeps_the_conversation(chat_run):
    from tests.e2e.test_cli import tunesmith

    tmp, result = chat_run
    proc = tunesmith("chat", result.run, stdin="What is htop?\nWhich section of the archive is it in?\n")
    assert proc.returncode == 0, proc.stderr
    trained = load_run(result.run)
    first = generate_answers(trained, ["What is htop?"])[0]
    history = [
        {"role": "user", "content": "What is htop?"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Which section of the archive is it in?"},
    ]
    second = trained.task.answer(trained.model, history, trained.pad_id)
    # each reply printed as it is, followed by a newline (a reply may hold newlines of its own)
    assert proc.stdout == f"{first}\n{second}\n"


def test_eval_cli_shows_base_and_tuned_with_example_outputs(chat_run):
    from tests.e2e.test_cli import tunesmith

    tmp, result = chat_run
    proc = tunesmith("eval", result.run, "--data", tmp / "test.jsonl", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["headline"][:2] == ["loss", "perplexity"]
    assert set(report["delta"]) == set(report["headline"])
    assert set(report["interval"]) == {"rouge1", "rouge2", "rougeL"}  # means of per-answer scores only
    for interval in report["interval"].values():
        assert interval["low"] <= interval["delta"] <= interval["high"]
    assert len(report["examples"]) == 3 and all(e["tuned"] == e["tuned"].strip() for e in report["examples"])


def test_gradient_checkpointing_gives_the_same_gradients(chat_run, smollm_dir):
    from transformers import AutoModelForCausalLM

    from tunesmith.training.setup import enable_gradient_checkpointing

    tmp, _ = chat_run
    p = prepare(chat_config(tmp))
    features = p.train_features[:3]
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = p.method.apply(AutoModelForCausalLM.from_pretrained(smollm_dir), None)
        if checkpointing:
            enable_gradient_checkpointing(model)
        p.task.prepare_model(model)
        model.train()
        loss, _ = p.task.loss(model, p.task.collate(features, 2))
        loss.backward()
        grads.append({n: q.grad.clone() for n, q in model.named_parameters() if q.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_prompt_learning_methods_train_chat_on_padded_rows_and_reload(method, tmp_path):
    """Virtual tokens go in front of each row, so these methods train on padded (not packed) batches; the
    answer-only loss lines up with peft's own loss (prompt tuning shifts the logits by its virtual tokens);
    the reloaded run generates what the trained model generated."""
    cfg = chat_config(
        tmp_path,
        **{
            "method": method,
            "method.virtual_tokens": 8,
            "train.epochs": 1,
            "train.learning_rate": 3e-2,
            "evaluation.forgetting": False,  # tested elsewhere; decoding these models is slow
        },
    )
    p = prepare(cfg)
    result = finetune(cfg, quiet())
    report = json.loads((result.run / "eval.json").read_text())
    assert report["tuned"]["loss"] < report["base"]["loss"]
    model = result.model.eval()
    p.task.prepare_model(model)
    assert p.task.pack is False
    batch = p.task.collate(p.train_features[:4], p.tokenizer.pad_token_id)
    with torch.no_grad():
        ours, count = p.task.loss(model, batch)
        theirs = model(**batch).loss  # peft pads the labels for the virtual tokens itself
    torch.testing.assert_close(ours / count, theirs, rtol=1e-4, atol=1e-5)
    trained = load_run(result.run)
    prompt = trained.task.prompt_ids([{"role": "user", "content": "What is htop?"}])
    assert generate_answers(trained, ["What is htop?"]) == trained.task.generate_texts(
        model, [prompt], 1, trained.pad_id
    )


def test_report_of_a_chat_run_shows_example_outputs_and_general_prompts(chat_run, tmp_path):
    from tunesmith.reporting.run_report import write_report

    tmp, result = chat_run
    page = write_report(result.run, tmp_path / "chat.html").read_text()
    assert "<h2>Example outputs</h2>" in page and "general prompt" in page and "perplexity" in page
    assert "Confusion matrix" not in page
    assert page.count('src="data:image/png;base64,') == 1  # the curves


def test_studio_try_holds_a_conversation_as_tunesmith_chat(chat_run):
    """The studio's Try page on a chat run: each message a user turn, each reply what `tunesmith chat`'s
    code (task.answer on the whole conversation) writes; Start over clears it; a tampered conversation is
    refused with a message, not a traceback."""
    import html
    import re

    from fastapi.testclient import TestClient

    from tunesmith.studio.app import StudioSettings, build_studio

    _, result = chat_run
    run = Path(result.run)
    trained = load_run(run)
    with TestClient(build_studio(run.parent, StudioSettings())) as client:
        form = client.get(f"/runs/{run.name}/try").text
        assert 'name="message"' in form and 'name="system"' in form
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        conversation, history = "", []
        for message in ("What is htop?", "Which section of the archive is it in?"):
            sent = {"csrf": csrf, "conversation": conversation, "message": message, "action": "send"}
            page = client.post(f"/runs/{run.name}/try", data=sent)
            assert page.status_code == 200, page.text
            conversation = html.unescape(
                re.search(r'name="conversation" value="([^"]*)"', page.text).group(1)
            )
            history.append({"role": "user", "content": message})
            history.append(
                {"role": "assistant", "content": trained.task.answer(trained.model, history, trained.pad_id)}
            )
            assert json.loads(conversation) == history
            assert html.escape(history[-1]["content"]) in page.text
        reset = client.post(
            f"/runs/{run.name}/try", data={"csrf": csrf, "conversation": conversation, "action": "reset"}
        )
        assert reset.status_code == 200 and 'class="chat"' not in reset.text
        tampered = {"csrf": csrf, "conversation": '[{"role": "root", "content": 1}]', "message": "hi"}
        refused = client.post(f"/runs/{run.name}/try", data=tampered)
        assert refused.status_code == 422 and "start over" in refused.text
