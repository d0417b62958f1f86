"""Export: each format is loaded back by plain transformers / peft / ONNX Runtime and reproduces the run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.export.probe import TEXTS
from tunesmith.inference import load_run
from tunesmith.recipes import export as export_module
from tunesmith.recipes.export import ExportMismatch, export_run
from tunesmith.recipes.finetune import finetune

pytestmark = pytest.mark.slow


def quiet() -> Console:
    return Console(file=io.StringIO())


def classifier_run(data: dict[str, Path], out: Path, model: str, method: dict, pooling: str = "mean") -> Path:
    tree = {
        "task": {
            "name": "classification",
            "pooling": pooling,
            "head_init": "probe" if pooling == "mean" else "random",
        },
        "model": {"name": model, "max_length": 48},
        "data": {k: str(v) for k, v in data.items()},
        "method": method,
        "train": {"epochs": 1, "batch_size": 8, "learning_rate": 3e-3, "early_stopping_patience": None},
        "output_dir": str(out),
    }
    finetune(build_config(tree), quiet())
    return out


def run_logits(run: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    trained = load_run(run)
    enc = trained.tokenizer(list(TEXTS), padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.no_grad():
        return trained.model(**batch).logits, batch


@pytest.fixture(scope="module")
def lora_classifier(tmp_path_factory, minilm_dir) -> Path:
    from tests.conftest import demo_files

    tmp = tmp_path_factory.mktemp("lora-classifier")
    data = demo_files(tmp, train=60, validation=30, test=30)
    return classifier_run(data, tmp / "run", "minilm", {"name": "lora", "rank": 8})


@pytest.fixture(scope="module")
def cls_classifier(tmp_path_factory, minilm_dir) -> Path:
    """transformers' own head: the first token through the pooler (task.pooling=cls)."""
    from tests.conftest import demo_files

    tmp = tmp_path_factory.mktemp("cls-classifier")
    data = demo_files(tmp, train=60, validation=30, test=30)
    return classifier_run(data, tmp / "run", "minilm", {"name": "lora", "rank": 8}, pooling="cls")


def test_merged_mean_pooled_classifier_is_a_sentence_transformer_of_logits(lora_classifier, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig, AutoModel

    result = export_run(lora_classifier, tmp_path / "merged", "merged")
    assert result.comparison.ok and result.comparison.max_abs_diff <= 1e-4
    folder = result.folder
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    assert not (folder / "adapter_config.json").exists()
    reference, batch = run_logits(lora_classifier)
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    logits = model.encode(list(TEXTS), convert_to_tensor=True)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-4)
    assert AutoConfig.from_pretrained(folder).id2label == {0: "doc", 1: "libdevel", 2: "net"}
    # The encoder at the top is a plain transformers folder: AutoModel reads it, and the mean of its last
    # hidden states through the Dense head is the run's logits again.
    encoder = AutoModel.from_pretrained(folder).eval()
    assert not any("lora" in name for name, _ in encoder.named_parameters())
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    dense = model[2].linear
    torch.testing.assert_close(dense(pooled), reference, rtol=0, atol=1e-4)
    record = json.loads((folder / "tunesmith_export.json").read_text())
    assert record["format"] == "merged" and record["check"]["ok"] is True


def test_merged_cls_classifier_loads_in_plain_transformers(cls_classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    lora_classifier = cls_classifier
    result = export_run(lora_classifier, tmp_path / "merged", "merged")
    assert result.comparison.ok and result.comparison.max_abs_diff <= 1e-4
    folder = result.folder
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    assert not (folder / "adapter_config.json").exists()
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert not any("lora" in name for name, _ in plain.named_parameters())
    assert plain.config.id2label == {0: "doc", 1: "libdevel", 2: "net"}
    assert AutoTokenizer.from_pretrained(folder)("a text")["input_ids"]
    reference, batch = run_logits(lora_classifier)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, reference, rtol=0, atol=1e-4)
    record = json.loads((folder / "tunesmith_export.json").read_text())
    assert record["format"] == "merged" and record["check"]["ok"] is True


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_adapter_export_loads_with_plain_peft(lora_classifier, cls_classifier, tmp_path, minilm_dir, pooling):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from tunesmith.models.pooled import PooledClassifierLoader

    run = lora_classifier if pooling == "mean" else cls_classifier
    result = export_run(run, tmp_path / "adapter", "adapter")
    assert result.comparison.max_abs_diff == 0.0
    # peft itself puts the adapter on the base: transformers' classifier, or the mean-pooled one
    loader = PooledClassifierLoader if pooling == "mean" else AutoModelForSequenceClassification
    base = loader.from_pretrained(str(minilm_dir), num_labels=3)
    plain = PeftModel.from_pretrained(base, result.folder).eval()
    reference, batch = run_logits(run)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, reference, rtol=0, atol=1e-6)


def test_onnx_export_runs_in_onnx_runtime(lora_classifier, tmp_path):
    import onnxruntime
    from transformers import AutoConfig, AutoTokenizer

    result = export_run(lora_classifier, tmp_path / "onnx", "onnx")
    assert result.comparison.ok
    session = onnxruntime.InferenceSession(
        str(result.folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    tokenizer = AutoTokenizer.from_pretrained(result.folder)
    texts = ["a different batch size than the check used", "and length", "x"]
    enc = tokenizer(texts, padding=True, return_tensors="np")
    (logits,) = session.run(
        ["logits"], {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    )
    trained = load_run(lora_classifier)
    with torch.no_grad():
        reference = trained.model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.from_numpy(logits), reference, rtol=0, atol=2e-4)
    assert AutoConfig.from_pretrained(result.folder).id2label[1] == "libdevel"


def test_a_failed_check_leaves_nothing_behind_and_keeps_an_earlier_export(
    lora_classifier, tmp_path, monkeypatch
):
    out = tmp_path / "adapter"
    export_run(lora_classifier, out, "adapter")
    before = sorted(p.name for p in out.iterdir())
    # Demand more than exactness: the check fails as a real mismatch would.
    monkeypatch.setattr(export_module, "ADAPTER_TOLERANCE", -1.0)
    with pytest.raises(ExportMismatch, match="does not reproduce the run's model"):
        export_run(lora_classifier, out, "adapter", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no partial folder


def test_refusals_come_from_the_config_alone(lora_classifier, tmp_path):
    with pytest.raises(UserError, match="is not empty"):
        export_run(lora_classifier, lora_classifier / "model", "merged")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not a tunesmith export; refusing"):
        export_run(lora_classifier, tmp_path / "taken", "merged", overwrite=True)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    with pytest.raises(
        UserError, match=r"GGUF export is for decoder \(causal\) models .* on a encoder model"
    ):
        export_run(lora_classifier, tmp_path / "gguf", "gguf")
    assert not (tmp_path / "gguf").exists()


def test_bottleneck_adapters_export_as_adapter_and_onnx_not_merged(small_data, tmp_path, tiny_bert_dir):
    run = classifier_run(small_data, tmp_path / "run", str(tiny_bert_dir), {"name": "adapter", "size": 8})
    with pytest.raises(UserError, match="layers the base architecture does not have"):
        export_run(run, tmp_path / "merged", "merged")
    assert not (tmp_path / "merged").exists()
    assert export_run(run, tmp_path / "adapter", "adapter").comparison.max_abs_diff == 0.0
    assert export_run(run, tmp_path / "onnx", "onnx").comparison.ok


def test_qlora_merges_into_the_dequantized_base(small_data, tmp_path, minilm_dir):
    from transformers import AutoModelForSequenceClassification

    run = classifier_run(small_data, tmp_path / "run", "minilm", {"name": "qlora", "rank": 4}, pooling="cls")
    result = export_run(run, tmp_path / "merged", "merged")
    assert result.comparison.max_abs_diff <= 1e-4
    config = json.loads((result.folder / "config.json").read_text())
    assert "quantization_config" not in config
    plain = AutoModelForSequenceClassification.from_pretrained(result.folder)
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
    # the mean-pooled head of a QLoRA run merges as well (into a sentence-transformers folder)
    pooled = classifier_run(small_data, tmp_path / "pooled", "minilm", {"name": "qlora", "rank": 4})
    assert export_run(pooled, tmp_path / "pooled-merged", "merged").comparison.max_abs_diff <= 1e-4


def test_merged_chat_model_writes_the_same_tokens_in_plain_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.recipes.test_generative import chat_config
    from tunesmith.recipes.predict import generate_answers

    run = finetune(chat_config(tmp_path, **{"train.epochs": 1, "evaluation.forgetting": False}), quiet()).run
    result = export_run(run, tmp_path / "merged", "merged")
    assert result.comparison.tokens_equal == result.comparison.tokens_total == len(TEXTS)
    folder = result.folder
    assert (folder / "generation_config.json").is_file()
    trained = load_run(run)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == trained.tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.config.use_cache is True
    messages = [{"role": "user", "content": "What is htop?"}]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    plain = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert plain == generate_answers(trained, ["What is htop?"])[0]
    with pytest.raises(UserError, match="ONNX export is for encoder models"):
        export_run(run, tmp_path / "onnx", "onnx")
