"""Model resolution, on the real loading path, offline (HF_HUB_OFFLINE=1 is set in conftest)."""

from pathlib import Path

import pytest

from tunesmith.errors import UserError
from tunesmith.models.catalog import resolve_model
from tunesmith.models.loader import load_pretrained, load_tokenizer
from tunesmith.sections import ModelConfig


def test_catalog_name_points_into_the_installed_package():
    resolved = resolve_model("minilm")
    assert resolved.is_local and resolved.catalog.kind == "encoder"
    assert (Path(resolved.source) / "model.safetensors").is_file()


def test_local_folder(tiny_bert_dir):
    resolved = resolve_model(str(tiny_bert_dir))
    assert resolved.is_local and resolved.catalog is None
    assert load_tokenizer(resolved, ModelConfig(name=str(tiny_bert_dir)))("hello")["input_ids"][0] == 101


def test_folder_without_config_and_missing_folder(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))


def test_hub_id_offline_says_how_to_give_a_local_path():
    from transformers import AutoModel

    resolved = resolve_model("some-org/some-model-that-is-not-cached")
    assert not resolved.is_local
    with pytest.raises(UserError, match=r"Give a local folder instead: --model /path/to/model"):
        load_pretrained(AutoModel, resolved, ModelConfig(name=resolved.source))


def test_pickle_only_folder_is_refused(tmp_path, tiny_bert_dir):
    """Weights are read with safetensors only: a folder with just pytorch_model.bin does not load."""
    import shutil

    import torch
    from transformers import AutoModel

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert_dir, folder)
    state = AutoModel.from_pretrained(tiny_bert_dir).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="cannot load the model"):
        load_pretrained(AutoModel, resolve_model(str(folder)), ModelConfig(name=str(folder)))


@pytest.mark.slow
def test_gguf_model_is_converted_once_to_an_identical_safetensors_folder(model_cache):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.catalog import CATALOG, package_folder

    entry = CATALOG["smollm2-135m-instruct"]
    resolved = resolve_model(entry.name)
    folder = Path(resolved.source)
    assert folder.parent.parent == model_cache
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (folder / name).is_file(), name
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert resolve_model(entry.name).source == resolved.source  # cached: no second conversion

    tokenizer = AutoTokenizer.from_pretrained(folder)
    converted = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    original = AutoModelForCausalLM.from_pretrained(package_folder(entry), gguf_file=entry.gguf_file).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        assert torch.equal(converted(**inputs).logits, original(**inputs).logits)
        answer = converted.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0][inputs["input_ids"].shape[1] :])


def test_a_causal_model_is_refused_for_classification_before_any_work(tmp_path):
    from tunesmith.config import build_config
    from tunesmith.recipes.prepare import prepare

    cfg = build_config(
        {
            "model": {"name": "smollm2-135m-instruct"},
            "data": {"train": str(tmp_path / "none.csv")},
            "output_dir": str(tmp_path / "run"),
        }
    )
    with pytest.raises(
        UserError,
        match=r"is a causal model; the classification task needs a model of kind encoder \(in the catalog: minilm\)",
    ):
        prepare(cfg)
    assert not (tmp_path / "run").exists()
