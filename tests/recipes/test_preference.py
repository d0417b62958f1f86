"""Preference tuning on the real SmolLM2-135M-Instruct with LoRA: DPO pairs built from the shipped Debian chats
(chosen: the package's own one-line answer; rejected: another package's answer to the same question)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import chat_rows
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.recipes.finetune import finetune

pytestmark = pytest.mark.slow


def pairs(split: str, n: int) -> list[str]:
    """TRL records: each chat's question with its own answer chosen and the next chat's answer rejected."""
    chats = [json.loads(line)["messages"] for line in chat_rows(split, n + 1)]
    return [
        json.dumps({"prompt": a[:-1], "chosen": [a[-1]], "rejected": [b[-1]]})
        for a, b in zip(chats, chats[1:], strict=False)
    ]


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def preference_config(tmp: Path, method: dict | None = None) -> object:
    tree = {
        "task": {"name": "preference", "eval_generate_examples": 0, "generation": {"max_new_tokens": 16}},
        "model": {"name": "smollm2-135m-instruct", "max_length": 192},
        "data": {
            "train": write(tmp / "train.jsonl", pairs("train", 16)),
            "validation": write(tmp / "val.jsonl", pairs("validation", 4)),
            "test": write(tmp / "test.jsonl", pairs("test", 6)),
        },
        "method": method or {"name": "lora", "rank": 8, "dropout": 0.0},
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "warmup_ratio": 0.0,
            "log_every_steps": 1,
            "early_stopping_patience": None,
            "eval_batch_size": 8,
        },
        "evaluation": {"forgetting": False},
        "output_dir": str(tmp / "run"),
    }
    return build_config(tree)


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    return finetune(preference_config(tmp), Console(file=io.StringIO()))


def test_dpo_lora_raises_reward_and_preference_accuracy_on_held_out_pairs(dpo_run):
    events = [json.loads(line) for line in (dpo_run.run / "metrics.jsonl").read_text().splitlines()]
    validations = [e for e in events if e["event"] == "validation"]
    assert validations[0]["reward_accuracy"] == 0.0  # step 0: the model is its own reference
    assert validations[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # DPO starts at log 2
    report = json.loads((dpo_run.run / "eval.json").read_text())
    tuned, base = report["tuned"], report["base"]
    # the base is its own reference (rewards 0: no pair right); the tuned model ranks every held-out pair right
    assert tuned["reward_accuracy"] == 1.0 > base["reward_accuracy"] and tuned["reward_margin"] > 0
    assert tuned["preference_accuracy"] >= base["preference_accuracy"]
    assert tuned["chosen_logp"] > base["chosen_logp"]  # the chosen answers became more likely
    assert base["reference_kl"] == 0 < tuned["reference_kl"]


def test_a_dpo_run_exports_merged_and_plain_transformers_writes_its_answers(dpo_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.inference import load_run
    from tunesmith.recipes.export import export_run
    from tunesmith.recipes.predict import generate_answers

    result = export_run(dpo_run.run, tmp_path / "merged", "merged")
    assert result.comparison.tokens_equal == result.comparison.tokens_total > 0  # the export's own proof
    tokenizer = AutoTokenizer.from_pretrained(result.folder)
    model = AutoModelForCausalLM.from_pretrained(result.folder).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is htop?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=16, do_sample=False)  # the run's own max_new_tokens
    plain = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert plain == generate_answers(load_run(dpo_run.run), ["What is htop?"])[0]


def test_full_fine_tuning_dpo_scores_against_a_frozen_copy_of_the_base(tmp_path):
    cfg = preference_config(tmp_path, method={"name": "full"})
    cfg.train.learning_rate, cfg.train.epochs = 2e-5, 1
    result = finetune(cfg, Console(file=io.StringIO()))
    events = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    first = next(e for e in events if e["event"] == "validation")
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3) and first["reference_kl"] == pytest.approx(
        0, abs=1e-6
    )
    report = json.loads((result.run / "eval.json").read_text())
    tuned, base = report["tuned"], report["base"]
    # the tuned whole model is loaded back and scored against the base it left: rewards no longer all 0
    assert tuned["reward_accuracy"] > base["reward_accuracy"] and tuned["reference_kl"] > 0


def test_prompt_tuning_is_refused_up_front_for_a_loss_needing_the_reference(tmp_path):
    cfg = preference_config(tmp_path, method={"name": "prompt"})
    with pytest.raises(UserError, match="peft cannot switch virtual tokens off"):
        finetune(cfg, Console(file=io.StringIO()))


def test_the_data_gate_refuses_kto_records_for_a_paired_loss_with_their_line(tmp_path):
    cfg = preference_config(tmp_path)
    Path(cfg.data.train).write_text(
        json.dumps({"prompt": "What is htop?", "completion": "A process viewer.", "label": True}) + "\n"
    )
    with pytest.raises(
        UserError, match="train.jsonl line 1: task.loss dpo learns from chosen/rejected pairs"
    ):
        finetune(cfg, Console(file=io.StringIO()))
