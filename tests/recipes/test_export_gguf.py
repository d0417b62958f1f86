"""`export --format gguf`: SmolLM2 runs (LoRA and full) written to GGUF and read back by llama.cpp itself
(llama-cpp-python) and, independently, by transformers' GGUF loader: the same prompts, the same greedy answers,
stopping where the run stops; a quantized file by next-token agreement. Refusals come before any file is
written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import needs_llama_cpp
from tests.e2e.test_cli import tunesmith
from tests.recipes.test_generative import chat_config
from tunesmith.errors import UserError
from tunesmith.export.probe import outputs_of
from tunesmith.inference import load_run
from tunesmith.recipes.export import export_run
from tunesmith.recipes.finetune import finetune

pytestmark = [
    pytest.mark.slow,
    needs_llama_cpp,
]
GO_RENDER = Path(__file__).parents[1] / "support" / "ollama_render.go"
SHORT = {"train.epochs": 1, "evaluation.forgetting": False, "train.keep": "tuned"}


def quiet() -> Console:
    return Console(quiet=True)


@pytest.fixture(scope="module")
def lora_chat(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gguf-lora")
    return finetune(chat_config(tmp, **SHORT), quiet()).run


@pytest.fixture(scope="module")
def f16(lora_chat, tmp_path_factory):
    return export_run(lora_chat, tmp_path_factory.mktemp("gguf-f16") / "gguf", "gguf")


def test_f16_gguf_answers_as_the_run_in_llama_cpp_and_in_transformers(lora_chat, f16):
    from transformers import AutoModelForCausalLM

    result = f16
    check = result.comparison
    assert check.ok and check.prompts_equal == check.tokens_equal == check.tokens_total == 6
    assert check.agreement == 1.0
    # llama.cpp's loss on the run's 4 validation chats equals the run's own: the file is the model, and the
    # supervised tokens are the same ones the training loss reads
    assert check.perplexity_ratio == pytest.approx(1.0, abs=2e-3) and check.max_perplexity_ratio is None
    record = json.loads((result.folder / "tunesmith_export.json").read_text())
    assert record["format"] == "gguf" and record["quant"] == "f16" and record["check"]["ok"]
    assert sorted(p.name for p in result.folder.iterdir()) == [
        "Modelfile",
        "model.gguf",
        "tunesmith_export.json",
    ]

    # transformers' GGUF loader, a reader independent of llama.cpp, writes the run's answers too
    trained = load_run(lora_chat)
    reference = outputs_of(trained.task, trained.tokenizer, trained.model, trained.pad_id)
    model = AutoModelForCausalLM.from_pretrained(result.folder, gguf_file="model.gguf").eval()
    assert outputs_of(trained.task, trained.tokenizer, model, trained.pad_id).tokens == reference.tokens


def test_the_gguf_file_carries_the_runs_template_stop_tokens_and_generation_defaults(lora_chat, f16):
    import gguf

    folder = f16.folder
    reader = gguf.GGUFReader(folder / "model.gguf")
    fields = {name: field.contents() for name, field in reader.fields.items()}
    trained = load_run(lora_chat)
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.chat_template"] == trained.tokenizer.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == trained.tokenizer.eos_token_id == 2  # <|im_end|>
    assert fields["tokenizer.ggml.pre"] == "smollm"
    assert (
        fields["general.sampling.temp"] == 0.0
    )  # the run decodes greedily (task.generation.do_sample false)
    assert len(fields["tokenizer.ggml.tokens"]) == trained.model.config.vocab_size


def modelfile_fields(text: str) -> dict[str, list[str]]:
    """FROM, TEMPLATE, SYSTEM and PARAMETER values as Ollama's parser reads them: a value in triple quotes
    verbatim, across lines; any other value to the end of its line."""
    fields: dict[str, list[str]] = {}
    rest = text
    while rest.strip():
        key, _, rest = rest.lstrip("\n").partition(" ")
        if rest.startswith('"""'):
            value, _, rest = rest[3:].partition('"""')
        else:
            value, _, rest = rest.partition("\n")
        fields.setdefault(key, []).append(value)
    return fields


@pytest.mark.skipif(
    shutil.which("go") is None, reason="no Go toolchain (make setup installs golang-go as root)"
)
def test_the_modelfile_template_renders_the_runs_prompts_token_for_token_in_go(lora_chat, f16):
    """Ollama's templates are Go text/template: rendered by Go itself, as Ollama's server prepares them
    (tests/support/ollama_render.go), a multi-turn conversation with and without a system message must be
    the run's own prompt, token for token."""
    import subprocess

    fields = modelfile_fields((f16.folder / "Modelfile").read_text())
    assert fields["FROM"] == ["./model.gguf"]
    assert fields["SYSTEM"] == ["You are a helpful AI assistant named SmolLM, trained by Hugging Face"]
    assert fields["PARAMETER"] == ['stop "<|im_end|>"', "temperature 0", "top_p 1", "repeat_penalty 1"]
    trained = load_run(lora_chat)
    turns = [
        {"role": "user", "content": "What is htop?"},
        {"role": "assistant", "content": "An interactive process viewer."},
        {"role": "user", "content": "And iotop?"},
    ]
    for messages in (turns, [{"role": "system", "content": "Answer in one line."}, *turns]):
        request = {"template": fields["TEMPLATE"][0], "system": fields["SYSTEM"][0], "messages": messages}
        go = subprocess.run(
            ["go", "run", str(GO_RENDER)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert go.returncode == 0, go.stderr
        ids = trained.tokenizer(go.stdout, add_special_tokens=False)["input_ids"]
        assert ids == trained.task.prompt_ids(messages)


def test_q8_0_through_the_cli_is_half_the_size_and_agrees_on_the_next_token(lora_chat, tmp_path):
    out = tmp_path / "q8"
    proc = tunesmith("export", lora_chat, "--format", "gguf", "--quant", "q8_0", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    assert said["ok"] and said["prompts_rendered_identically"] == said["prompts"] == 6
    assert said["next_token_agreement"] >= said["min_next_token_agreement"] == 0.9
    assert 0.97 < said["validation_perplexity_ratio"] <= said["max_validation_perplexity_ratio"] == 1.03
    margins = said["run_margins_where_answers_part"]  # one per answer that is not the run's, measured there
    assert len(margins) == 6 - said["prompts_with_identical_tokens"]
    assert all(m is None or m >= 0 for m in margins)  # the run ranked its own token first
    record = json.loads((out / "tunesmith_export.json").read_text())
    assert record["quant"] == "q8_0"
    f16 = 2 * 134.5e6  # parameters x 2 bytes
    assert (out / "model.gguf").stat().st_size < 0.6 * f16


def test_a_fully_fine_tuned_run_exports_to_gguf_with_the_same_answers(tmp_path):
    config = chat_config(tmp_path, {"name": "full"}, **SHORT, **{"train.learning_rate": 1e-4})
    run = finetune(config, quiet()).run
    check = export_run(run, tmp_path / "gguf", "gguf").comparison
    assert check.ok and check.tokens_equal == check.tokens_total == 6


def test_without_the_runs_data_the_export_records_no_perplexity_ratio(lora_chat, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(lora_chat, moved)
    config = moved / "config.yaml"
    config.write_text(config.read_text().replace(str(lora_chat.parent), str(tmp_path / "gone")))
    check = export_run(moved, tmp_path / "gguf", "gguf").comparison
    assert check.ok and check.tokens_equal == 6 and check.perplexity_ratio is None


def test_gguf_refusals_come_before_anything_is_written(lora_chat, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown --quant 'q3'; valid for gguf: f16, f32, q8_0, q4_k_m"):
        export_run(lora_chat, tmp_path / "a", "gguf", quant="q3")
    with pytest.raises(UserError, match="--quant is for --format gguf, not merged"):
        export_run(lora_chat, tmp_path / "b", "merged", quant="q8_0")
    import tunesmith.export.gguf as gguf_export

    monkeypatch.setattr(gguf_export, "llama_cpp_installed", lambda: False)  # as on a machine without it
    with pytest.raises(
        UserError, match=r"checked by llama.cpp, which is not installed: pip install 'tunesmith\[gguf\]'"
    ):
        export_run(lora_chat, tmp_path / "c", "gguf", quant="q4_k_m")
    assert not any(tmp_path.iterdir())
