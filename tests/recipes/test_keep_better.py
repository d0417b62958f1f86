"""Quality by default: the head starts as the base model's probe (LP-FT), the base model competes with the
checkpoints, and a run whose fine-tuning did not beat the base holds the base and says so; that run predicts,
exports and serves like any other."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tests.conftest import demo_files
from tests.e2e.served import Server
from tunesmith.config import build_config
from tunesmith.evaluation.baseline import LinearProbe
from tunesmith.export.probe import TEXTS
from tunesmith.inference import load_run, read_run
from tunesmith.models.catalog import resolve_model
from tunesmith.models.pooled import sentence_transformer_logits
from tunesmith.recipes.export import export_run
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import predict_texts

pytestmark = pytest.mark.slow


def config(data: dict[str, Path], out: Path, method: str, learning_rate: float, **train):
    tree = {
        "data": {k: str(v) for k, v in data.items()},
        "method": {"name": method},
        "train": {"epochs": 1, "batch_size": 16, "learning_rate": learning_rate, **train},
        "evaluation": {"forgetting": False, "bootstrap_resamples": 100},
        "output_dir": str(out),
    }
    return build_config(tree)


def validations(run: Path) -> list[dict]:
    events = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [e for e in events if e["event"] == "validation"]


def probe_on(run: Path, texts_from: str) -> tuple[list[int], float]:
    """The base model (frozen MiniLM + the run's probe) on a split file: predictions and macro-F1."""
    spec = read_run(run)
    examples = spec.task.read(Path(spec.config.data.model_dump()[texts_from]), "auto")
    evaluation = spec.task.evaluate_baseline(resolve_model("minilm"), examples, spec.run.probe)
    return evaluation.predictions, evaluation.metrics["macro_f1"]


@pytest.mark.parametrize("head_init", ["random", "probe"])
def test_step_zero_validates_the_base_whichever_head_training_starts_from(tmp_path, head_init):
    data = demo_files(tmp_path, train=60, validation=30, test=30)
    out = tmp_path / "run"
    cfg = config(data, out, "lora", 5e-4)
    cfg.task.head_init = head_init
    finetune(cfg, Console(file=io.StringIO()))
    start, *_ = validations(out)
    assert start["step"] == 0
    _, probe_f1 = probe_on(out, "validation")
    assert start["macro_f1"] == pytest.approx(probe_f1, abs=1e-12)
    summary = json.loads((out / "run.json").read_text())
    assert summary["base_validation_macro_f1"] == pytest.approx(probe_f1, abs=1e-12)


@pytest.fixture(scope="module")
def spoiled(tmp_path_factory) -> tuple[Path, str]:
    """Full fine-tuning at a learning rate that wrecks the encoder: worse than the base on validation."""
    tmp = tmp_path_factory.mktemp("spoiled")
    data = demo_files(tmp, train=60, validation=30, test=30)
    console = Console(file=io.StringIO(), width=200)
    finetune(config(data, tmp / "run", "full", 0.05), console)
    return tmp / "run", console.file.getvalue()


def test_a_run_worse_than_the_base_keeps_the_base_and_says_so(spoiled):
    run, output = spoiled
    summary = json.loads((run / "run.json").read_text())
    assert summary["holds"] == "base" and summary["best_step"] == 0
    tuned = [v["macro_f1"] for v in validations(run) if v["step"] > 0]
    assert max(tuned) < summary["base_validation_macro_f1"]
    assert "fine-tuning did not beat the base model on validation" in output
    report = json.loads((run / "eval.json").read_text())
    assert report["holds"] == "base"
    assert report["tuned"]["macro_f1"] == pytest.approx(report["base"]["macro_f1"], abs=1e-9)

    # The run's model is the base: it predicts what the probe predicts.
    predictions, _ = probe_on(run, "test")
    trained = load_run(run)
    test_texts = [ex.text for ex in trained.task.read(Path(trained.config.data.test), "auto")]
    ranked = predict_texts(trained, test_texts)
    assert [trained.task.label_id(r[0][0]) for r in ranked] == predictions


def test_a_run_holding_the_base_exports_and_serves(spoiled, tmp_path):
    run, _ = spoiled
    trained = load_run(run)
    expected = [r[0][0] for r in predict_texts(trained, list(TEXTS))]

    merged = export_run(run, tmp_path / "merged", "merged")  # sentence-transformers, read back by it
    assert merged.comparison.ok
    logits = sentence_transformer_logits(merged.folder, list(TEXTS))
    assert [trained.task.labels[i] for i in logits.argmax(-1).tolist()] == expected

    server = Server([str(run)], tmp_path / "serve")
    try:
        with server.client() as client:
            card = client.get("/v1/models/run").json()
            assert card["holds"] == "base"
            answer = client.post("/v1/classify", json={"model": "run", "input": list(TEXTS)}).json()
        assert [item["label"] for item in answer["data"]] == expected
    finally:
        server.stop()
    assert "holds the base model" in server.output.read_text()


def test_keep_tuned_keeps_the_fine_tuned_model_however_it_scores(tmp_path):
    data = demo_files(tmp_path, train=60, validation=30, test=30)
    out = tmp_path / "run"
    finetune(config(data, out, "full", 0.05, keep="tuned"), Console(file=io.StringIO()))
    summary = json.loads((out / "run.json").read_text())
    assert summary["holds"] == "tuned" and summary["best_step"] > 0
    assert summary["base_validation_macro_f1"] is None
    assert [v["step"] for v in validations(out)][0] > 0  # the base did not compete


def test_a_binary_probe_becomes_a_two_logit_head_with_the_same_probabilities():
    rng = torch.Generator().manual_seed(0)
    features = torch.randn(40, 6, generator=rng).numpy()
    labels = (features[:, 0] + 0.3 * features[:, 1] > 0).astype(int).tolist()
    probe = LinearProbe.fit(features, labels, seed=0)
    weight, bias = probe.as_head(2)
    logits = torch.from_numpy(features) @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    score = torch.from_numpy(features @ probe.coef.T + probe.intercept)[:, 0]
    torch.testing.assert_close(logits.softmax(-1)[:, 1], torch.sigmoid(score), rtol=0, atol=1e-6)
    assert logits.argmax(-1).tolist() == probe.predict(features)


def test_the_head_is_the_probe_before_training_and_random_training_takes_a_fresh_trainable_head(tmp_path):
    from tunesmith.recipes.prepare import prepare

    data = demo_files(tmp_path, train=60, validation=30, test=30)
    p = prepare(config(data, tmp_path / "run", "lora", 5e-4))
    probe = tmp_path / "probe.safetensors"
    p.task.fit_baseline(p.resolved, p.splits.train, probe, 0)
    base = p.task.load_model(p.resolved)
    assert p.task.init_head(base, probe)
    weight, bias = LinearProbe.load(probe).as_head(base.config.num_labels)
    assert torch.equal(base.classifier.weight, torch.from_numpy(weight))
    assert torch.equal(base.classifier.bias, torch.from_numpy(bias))
    model = p.method.apply(base, p.task.peft_task_type, 10)
    fresh = p.task.training_head(model, seed=0)
    heads = {n for n, q in model.named_parameters() if q.requires_grad and "classifier" in n.split(".")}
    assert set(fresh) == heads and len(heads) == 2  # the trainable copy peft keeps, not the frozen original
    (w,) = (v for n, v in fresh.items() if n.endswith("weight"))
    assert w.shape == base.classifier.weight.shape and 0.015 < w.std().item() < 0.025  # initializer_range
    assert torch.equal(w, p.task.training_head(model, seed=0)[next(n for n in fresh if n.endswith("weight"))])
    p.task.params.head_init = "probe"
    assert p.task.training_head(model, seed=0) is None  # LP-FT: training starts from the probe itself


def test_a_checkpoint_within_the_validation_noise_does_not_replace_the_base(tmp_path):
    """The same training twice (same seed): with train.keep_confidence 0 the best checkpoint replaces the base
    as soon as it scores higher; asked for near-certainty on 30 validation examples, the base stays, and the
    run says why, with the share of bootstrap resamples the checkpoint won."""
    data = demo_files(tmp_path, train=60, validation=30, test=30)
    runs = {}
    for confidence in (0.0, 0.999):
        out = tmp_path / f"run-{confidence}"
        console = Console(file=io.StringIO(), width=400)
        finetune(config(data, out, "lora", 2e-3, epochs=3, keep_confidence=confidence), console)
        summary = json.loads((out / "run.json").read_text())
        runs[confidence] = summary, validations(out), console.file.getvalue()
    (loose, loose_log, _), (strict, strict_log, output) = runs[0.0], runs[0.999]
    assert [v["macro_f1"] for v in loose_log] == [v["macro_f1"] for v in strict_log]  # the same training
    assert loose["holds"] == "tuned" and loose["best_step"] > 0
    best = next(v for v in loose_log if v["step"] == loose["best_step"])
    assert best["macro_f1"] > loose["base_validation_macro_f1"]
    assert 0.5 < best["beats_start_share"] < 0.999
    assert strict["holds"] == "base" and strict["best_step"] == 0
    assert f"in only {best['beats_start_share']:.0%} of bootstrap resamples" in output
    assert "fine-tuning did not clearly beat the base model on validation" in output


def test_training_from_a_finished_run_goes_on_from_its_head(tmp_path):
    """train.init_from (retune.start=serving) keeps the run's trained head: at a learning rate too small to
    move anything, the first epoch validates exactly as step 0 (the finished run) did. A fresh head there
    would score near chance."""
    data = demo_files(tmp_path, train=60, validation=30, test=30)
    first = tmp_path / "v1"
    finetune(config(data, first, "lora", 2e-3, keep="tuned"), Console(file=io.StringIO()))
    second = tmp_path / "v2"
    finetune(config(data, second, "lora", 1e-12, init_from=str(first)), Console(file=io.StringIO()))
    start, after = validations(second)[:2]
    assert start["step"] == 0 and after["step"] > 0
    assert after["macro_f1"] == pytest.approx(start["macro_f1"], abs=1e-9)
    assert after["loss"] == pytest.approx(start["loss"], rel=1e-4)
