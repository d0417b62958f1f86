"""Few-step fine-tuning runs on real models: the packaged MiniLM and a tiny random BERT."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from tunesmith.config import build_config
from tunesmith.errors import Interrupted
from tunesmith.inference import load_run
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import predict_texts
from tunesmith.training.checkpoint import latest_checkpoint

pytestmark = pytest.mark.slow


def quiet() -> Console:
    return Console(file=io.StringIO())


def config(data: dict[str, Path], out: Path, model: str, method: dict, task: dict | None = None, **train):
    """A run config for the mechanics tests: the fine-tuned model is kept whatever it scores (train.keep=tuned),
    so the run's model is the last best checkpoint (tests/recipes/test_keep_better.py tests keep=better)."""
    tree = {
        "task": {"name": "classification", **(task or {})},
        "model": {"name": model, "max_length": 48},
        "data": {k: str(v) for k, v in data.items()},
        "method": method,
        "train": {
            "batch_size": 8,
            "log_every_steps": 1,
            "early_stopping_patience": None,
            "warmup_ratio": 0.0,
            "keep": "tuned",
            **train,
        },
        "output_dir": str(out),
    }
    return build_config(tree)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run / "checkpoints") / "trainable.safetensors")


def test_lora_on_minilm_learns_and_reloads_identically(small_data, tmp_path):
    from peft import PeftModel

    from tunesmith.models.pooled import PooledClassifierLoader

    out = tmp_path / "run"
    cfg = config(
        small_data, out, "minilm", {"name": "lora", "rank": 8}, epochs=1, learning_rate=3e-3, batch_size=4
    )
    result = finetune(cfg, quiet())

    losses = [
        r["loss"]
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if r["event"] == "train"
    ]
    assert len(losses) == 30
    assert sum(losses[-6:]) / 6 < 0.75 * sum(losses[:6]) / 6, losses
    for name in (
        "config.yaml",
        "task.json",
        "run.json",
        "eval.json",
        "baseline_probe.safetensors",
        "model/adapter_model.safetensors",
        "model/adapter_config.json",
        "model/tokenizer.json",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "eval.json").read_text())
    assert set(report) == {
        "headline",
        "tuned",
        "holds",
        "base",
        "base_description",
        "delta",
        "interval",
        "forgetting",
    }
    assert report["tuned"]["examples"] == 30 and len(report["tuned"]["confusion_matrix"]) == 3

    # The reloaded run predicts exactly what the model in memory predicted (one epoch: best == last).
    texts = ["development files for the foo library", "documentation for bar", "network daemon"]
    trained = load_run(out)
    reloaded = torch.tensor([[p for _, p in sorted(r)] for r in predict_texts(trained, texts)])
    trained.model = result.model.eval()
    in_memory = torch.tensor([[p for _, p in sorted(r)] for r in predict_texts(trained, texts)])
    assert torch.allclose(reloaded, in_memory, atol=1e-6)

    # The adapter is a plain peft adapter, on tunesmith's mean-pooled classifier (models/pooled.py).
    base = PooledClassifierLoader.from_pretrained(_minilm(), num_labels=3)
    plain = PeftModel.from_pretrained(base, out / "model").eval()
    enc = trained.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(plain(**enc).logits, trained.model(**enc).logits, atol=1e-5)


def _minilm() -> str:
    from tunesmith.models.catalog import resolve_model

    return resolve_model("minilm").source


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "freeze", "layers": 1}])
def test_whole_model_methods_save_a_plain_transformers_model(
    small_data, tmp_path, tiny_bert_dir, method, pooling
):
    from transformers import AutoModelForSequenceClassification

    from tunesmith.models.pooled import PooledClassifierLoader

    out = tmp_path / "run"
    task = {"pooling": pooling, "head_init": "probe" if pooling == "mean" else "random"}
    finetune(config(small_data, out, str(tiny_bert_dir), method, task, epochs=1, learning_rate=1e-3), quiet())
    trained = load_run(out)
    # transformers' own class for its first-token head; tunesmith's class (a transformers PreTrainedModel)
    # for the mean-pooled one, whose folder says so in config.json
    loader = AutoModelForSequenceClassification if pooling == "cls" else PooledClassifierLoader
    plain = loader.from_pretrained(str(out / "model")).eval()
    assert (plain.config.to_dict().get("tunesmith_pooling") == "mean") == (pooling == "mean")
    assert plain.config.id2label == {0: "doc", 1: "libdevel", 2: "net"}
    enc = trained.tokenizer(["a text", "another, longer text"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**enc).logits, trained.model(**enc).logits)


def test_same_seed_same_result_and_the_estimate_leaves_no_trace(small_data, tmp_path, tiny_bert_dir):
    runs, estimates = [], []
    for name, estimate in (("a", "always"), ("b", "auto")):  # b: 30 steps, too short to be worth estimating
        cfg = config(
            small_data,
            tmp_path / name,
            str(tiny_bert_dir),
            {"name": "lora", "rank": 4},
            epochs=2,
            learning_rate=1e-3,
            estimate=estimate,
        )
        finetune(cfg, quiet())
        runs.append(final_weights(tmp_path / name))
        estimates.append(json.loads((tmp_path / name / "run.json").read_text())["estimate"])
    assert estimates[0]["steps_per_epoch"] == 15 and estimates[1] is None
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])  # its steps were undone, RNG included
    # --overwrite replaces the run with the same result, its base-model baseline included
    result = finetune(cfg, quiet(), overwrite=True)
    assert all(torch.equal(runs[1][k], v) for k, v in final_weights(tmp_path / "b").items())
    assert (tmp_path / "b" / "baseline_probe.safetensors").is_file() and result.evaluation["base"]


class Crash(Exception):
    pass


def tiny_lora(small_data, tiny_bert_dir, out, epochs: int, accumulation: int):
    """LoRA r=4 on the tiny BERT, lr 1e-3: the config the crash and signal resumes compare runs of."""
    lora = {"name": "lora", "rank": 4}
    return config(
        small_data,
        out,
        str(tiny_bert_dir),
        lora,
        epochs=epochs,
        learning_rate=1e-3,
        gradient_accumulation=accumulation,
    )


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_after_a_crash_reaches_the_same_weights(small_data, tmp_path, tiny_bert_dir, accumulation):
    def cfg(out):
        return tiny_lora(small_data, tiny_bert_dir, out, epochs=3, accumulation=accumulation)

    finetune(cfg(tmp_path / "straight"), quiet())

    def crash(state, loss):
        if state.epoch == 1 and state.batches_done >= 6:  # part-way through the second epoch
            raise Crash()

    with pytest.raises(Crash):
        finetune(cfg(tmp_path / "crashed"), quiet(), on_step=[crash])
    assert not (tmp_path / "crashed" / "run.json").exists()
    finetune(cfg(tmp_path / "crashed"), quiet(), resume=True)

    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "crashed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(steps), "a resumed log has no duplicated steps"


def test_a_run_stopped_before_its_first_checkpoint_resumes_as_a_new_run_starts(
    small_data, tmp_path, tiny_bert_dir
):
    """--resume with no checkpoint yet starts at step 0, and must start as a new run does (the head afresh
    after the probe's step-0 validation, the probe copied whole): the same weights at the end."""
    finetune(tiny_lora(small_data, tiny_bert_dir, tmp_path / "straight", epochs=2, accumulation=1), quiet())

    def crash(state, loss):
        if state.step == 2:
            raise Crash()

    cfg = tiny_lora(small_data, tiny_bert_dir, tmp_path / "early", epochs=2, accumulation=1)
    with pytest.raises(Crash):
        finetune(cfg, quiet(), on_step=[crash])
    assert not (tmp_path / "early" / "checkpoints" / "latest.json").exists()
    finetune(cfg, quiet(), resume=True)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "early")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize(("accumulation", "signum"), [(1, signal.SIGTERM), (2, signal.SIGINT)])
def test_a_signal_checkpoints_the_step_in_hand_and_resume_reaches_the_same_weights(
    small_data, tmp_path, tiny_bert_dir, accumulation, signum
):
    """Preemption: SIGTERM (or a first Ctrl-C) mid-epoch finishes the optimizer step, checkpoints it with its
    place in the epoch and raises Interrupted; --resume goes on from that very step, to the same weights."""

    def cfg(out):
        return tiny_lora(small_data, tiny_bert_dir, out, epochs=2, accumulation=accumulation)

    finetune(cfg(tmp_path / "straight"), quiet())
    sent = []

    def preempt(state, loss):
        if state.epoch == 1 and state.batches_done >= 4 and not sent:  # part-way through the second epoch
            sent.append(state.step)
            os.kill(os.getpid(), signum)

    with pytest.raises(Interrupted) as stopped:
        finetune(cfg(tmp_path / "preempted"), quiet(), on_step=[preempt])
    step = sent[0]
    assert stopped.value.exit_code == 128 + signum
    assert str(stopped.value).startswith(f"interrupted at step {step} of ")
    assert str(stopped.value).endswith(
        f"continue with: tunesmith train --out {tmp_path / 'preempted'} --resume"
    )
    saved = latest_checkpoint(tmp_path / "preempted" / "checkpoints") / "state.json"
    state = json.loads(saved.read_text())["state"]
    assert state["step"] == step and state["epoch"] == 1 and state["batches_done"] > 0  # mid-epoch
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are gone with the loop
    console = Console(file=io.StringIO())
    finetune(cfg(tmp_path / "preempted"), console, resume=True)
    assert f"step {step}" in console.file.getvalue()
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "preempted")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_token_cap_splits_batches_into_passes_with_the_same_step(small_data, tmp_path, tiny_bert_dir):
    """train.max_batch_tokens: a batch above the cap runs as several passes whose gradients add up to the
    batch's, so (without dropout, whose masks depend on the passes) training reaches the same weights. In fp32:
    bf16 autocast (precision auto on a CPU with native bf16) rounds a pass's sums differently from the whole
    batch's, which is not what this checks."""
    from transformers import AutoConfig, AutoTokenizer

    undropped = tmp_path / "tiny-bert-no-dropout"
    shutil.copytree(tiny_bert_dir, undropped)
    model_config = AutoConfig.from_pretrained(undropped)
    model_config.hidden_dropout_prob = model_config.attention_probs_dropout_prob = 0.0
    model_config.save_pretrained(undropped)
    weights = {}
    for cap in (None, 40):  # batches of 8 up to 48 tokens: 40 tokens is one to four examples a pass
        out = tmp_path / f"cap-{cap}"
        cfg = config(
            small_data,
            out,
            str(undropped),
            {"name": "full"},
            epochs=2,
            max_batch_tokens=cap,
            precision="fp32",
        )
        finetune(cfg, quiet())
        weights[cap] = final_weights(out)
    texts = [row["text"] for row in csv.DictReader(small_data["train"].open())]
    lengths = sorted(len(ids) for ids in AutoTokenizer.from_pretrained(undropped)(texts)["input_ids"])
    assert sum(lengths[:8]) > 40  # even the shortest batch is split
    assert weights[None].keys() == weights[40].keys()
    for name, value in weights[None].items():
        assert torch.allclose(value, weights[40][name], atol=1e-5), name


def events(run: Path, kind: str) -> list[dict]:
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == kind
    ]


def test_early_stopping_on_the_chosen_metric(small_data, tmp_path, tiny_bert_dir):
    # A learning rate this small leaves the metric flat, so nothing improves after the first validation.
    out = tmp_path / "run"
    cfg = config(
        small_data,
        out,
        str(tiny_bert_dir),
        {"name": "full"},
        epochs=6,
        learning_rate=1e-12,
        early_stopping_patience=2,
        metric="accuracy",
    )
    result = finetune(cfg, quiet())
    assert result.summary["stopped_early"] and result.summary["best_step"] == 15
    assert [e["epoch"] for e in events(out, "validation")] == [1, 2, 3]
    assert [e["best"] for e in events(out, "validation")] == [True, False, False]


def test_validation_every_n_steps(small_data, tmp_path, tiny_bert_dir):
    out = tmp_path / "run"
    cfg = config(
        small_data,
        out,
        str(tiny_bert_dir),
        {"name": "lora", "rank": 2},
        epochs=1,
        learning_rate=1e-3,
        eval_every_steps=4,
        metric="loss",
    )
    finetune(cfg, quiet())
    validations = events(out, "validation")
    assert [e["step"] for e in validations] == [4, 8, 12, 15]  # every 4 steps, and at the end of the epoch
    assert all({"loss", "accuracy", "macro_f1"} <= set(e) for e in validations)


@pytest.mark.parametrize("method", ["dora", "adalora", "ia3", "loha", "lokr", "prompt"])
def test_adapter_methods_train_and_reload_through_the_run_folder(small_data, tmp_path, tiny_bert_dir, method):
    out = tmp_path / "run"
    params = {"ia3": {}, "prompt": {"virtual_tokens": 4}, "adalora": {"init_rank": 4, "rank": 2}}.get(
        method, {"rank": 4}
    )
    result = finetune(
        config(small_data, out, str(tiny_bert_dir), {"name": method, **params}, epochs=1), quiet()
    )
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == {"dora": "LORA", "prompt": "PROMPT_TUNING"}.get(method, method.upper())
    assert adapter.get("use_dora", False) == (method == "dora")
    trained = load_run(out)
    enc = trained.tokenizer(["a text", "another, longer text"], padding=True, return_tensors="pt")
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trained.model(**enc).logits, result.model(**enc).logits)


def test_bottleneck_adapters_train_and_reload_through_the_run_folder(small_data, tmp_path, tiny_bert_dir):
    out = tmp_path / "run"
    result = finetune(
        config(small_data, out, str(tiny_bert_dir), {"name": "adapter", "size": 8}, epochs=1), quiet()
    )
    saved = load_file(out / "model" / "adapter_model.safetensors")
    assert (
        sum(".adapter." in name for name in saved) == 2 * 2 * 4
    )  # 2 layers x 2 places x down/up weight/bias
    assert {"classifier.weight", "classifier.bias"} <= set(saved)
    assert not any("query" in name or "embeddings" in name for name in saved)  # the base is not saved
    trained = load_run(out)
    enc = trained.tokenizer(["a text", "another, longer text"], padding=True, return_tensors="pt")
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trained.model(**enc).logits, result.model(**enc).logits, rtol=0, atol=0)


def test_qlora_trains_lora_on_a_4_bit_minilm_and_reloads_it_quantized(small_data, tmp_path):
    import bitsandbytes as bnb

    out = tmp_path / "run"
    cfg = config(
        small_data, out, "minilm", {"name": "qlora", "rank": 8}, epochs=1, learning_rate=3e-3, batch_size=4
    )
    result = finetune(cfg, quiet())
    losses = [e["loss"] for e in events(out, "train")]
    assert sum(losses[-6:]) / 6 < 0.75 * sum(losses[:6]) / 6, losses
    trained = load_run(out)
    quantized = [m for m in trained.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 6 * 6  # every projection of the 6 layers; not the classifier (and no pooler)
    enc = trained.tokenizer(["a text", "another, longer text"], padding=True, return_tensors="pt")
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trained.model(**enc).logits, result.model(**enc).logits, rtol=0, atol=1e-6)
