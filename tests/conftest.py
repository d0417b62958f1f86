"""Shared fixtures: real models (the packaged MiniLM and a tiny randomly initialised BERT built from a
config, with MiniLM's real tokenizer) and real data files cut from the shipped demo dataset."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# No test may reach a hub: the real loading path runs, offline.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs WORKERS processes at once (pytest-xdist): each computes on its share of the cores rather
    # than all of them, so they do not oversubscribe the machine (set before torch loads; subprocesses inherit).
    from tunesmith.processes import usable_cores  # no torch there

    share = max(1, usable_cores() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(share))

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (make setup installs it: the gguf extra)",
)
"""For tests that load GGUF files in llama.cpp (export --format gguf, serve --engine llama.cpp)."""


def _tiny_decoder(kind: str, seed: int | None, **config: object):
    """A randomly initialised two-layer transformers decoder of `kind` ("Llama", "Mistral") with 4 query heads
    and 2 key/value heads (the SmolLM2 architecture at toy size); `config` sets the rest. `seed` None keeps the
    global RNG as it is."""
    import torch
    import transformers

    if seed is not None:
        torch.manual_seed(seed)
    settings = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, **config}
    config_class = getattr(transformers, f"{kind}Config")
    return getattr(transformers, f"{kind}ForCausalLM")(config_class(**settings))


def tiny_llama(
    vocab_size: int = 64, hidden_size: int = 32, intermediate_size: int = 48, seed: int | None = 0
):
    """A two-layer Llama at toy size, for tests of what is done to a decoder's layers."""
    return _tiny_decoder(
        "Llama",
        seed,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        max_position_embeddings=64,
    )


def tiny_mistral(
    window: int,
    vocab_size: int = 64,
    hidden_size: int = 32,
    intermediate_size: int = 48,
    max_positions: int = 64,
    seed: int = 0,
):
    """A two-layer Mistral at toy size whose attention sees only the last `window` tokens: for tests of
    sliding-window attention (SDPA, transformers' own sliding mask)."""
    return _tiny_decoder(
        "Mistral",
        seed,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        sliding_window=window,
        attn_implementation="sdpa",
    )


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted models (GGUF -> safetensors) go to a per-session folder, not the user's home."""
    folder = tmp_path_factory.mktemp("model-cache")
    os.environ["TUNESMITH_CACHE"] = str(folder)
    return folder


ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "debian-sections"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from tunesmith.models.catalog import resolve_model

    return Path(resolve_model("minilm").source)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A 2-layer, 32-wide BERT with random weights (seeded), saved as safetensors with a real tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def demo_rows(
    split: str, labels: tuple[str, ...] | None = None, limit: int | None = None
) -> list[tuple[str, str]]:
    with (DEMO / f"{split}.csv").open(encoding="utf-8") as handle:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(handle)]
    if labels:
        rows = [r for r in rows if r[1] in labels]
    return rows[:limit] if limit else rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def shipped_slices(
    name: str,
    folder: Path,
    sizes: dict[str, int],
    edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """The first rows of each split of a shipped set, data/NAME/SPLIT.csv or .jsonl, written into `folder`
    (JSON lines passed through `edit` when given): shipped_slices("vader-movies", tmp, {"train": 240}) ->
    {"train": tmp/train.csv}."""
    files = {}
    for split, n in sizes.items():
        source = next((ROOT / "data" / name).glob(f"{split}.*"))
        out = folder / source.name
        if source.suffix == ".csv":
            with source.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                rows = [row for _, row in zip(range(n), reader, strict=False)]
                fields = list(reader.fieldnames or ())
            with out.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fields)
                writer.writeheader()
                writer.writerows(rows)
        else:
            lines = source.read_text(encoding="utf-8").splitlines()[:n]
            if edit is not None:
                lines = [json.dumps(edit(json.loads(line)), ensure_ascii=False) for line in lines]
            out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        files[split] = out
    return files


SMALL_LABELS = ("doc", "libdevel", "net")


def demo_files(folder: Path, labels: tuple[str, ...] = SMALL_LABELS, **sizes: int) -> dict[str, Path]:
    """CSV slices of the demo data: demo_files(tmp, train=60, validation=30) -> {"train": tmp/train.csv, ...}."""
    return {
        split: write_csv(folder / f"{split}.csv", demo_rows(split, labels, n)) for split, n in sizes.items()
    }


@pytest.fixture()
def small_data(tmp_path: Path) -> dict[str, Path]:
    """A 3-class slice of the demo data: 120 train, 30 validation, 30 test rows."""
    return {
        "train": write_csv(tmp_path / "train.csv", demo_rows("train", SMALL_LABELS, 120)),
        "validation": write_csv(tmp_path / "validation.csv", demo_rows("validation", SMALL_LABELS, 30)),
        "test": write_csv(tmp_path / "test.csv", demo_rows("test", SMALL_LABELS, 30)),
    }


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    """The packaged SmolLM2-135M-Instruct, converted from GGUF once per test session."""
    from tunesmith.models.catalog import resolve_model

    return Path(resolve_model("smollm2-135m-instruct").source)


@pytest.fixture(scope="session")
def smollm_model(smollm_dir: Path):
    """The real SmolLM2 in eval mode; tests must not train it (load their own copy for that)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm_dir, use_safetensors=True).eval()


def chat_rows(split: str, limit: int | None = None) -> list[str]:
    lines = (ROOT / "data" / "debian-chat" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit else lines
