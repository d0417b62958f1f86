"""Helpers for the serving tests: tiny real runs, and `tunesmith serve` as a subprocess on a free port."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from tests.conftest import chat_rows, demo_files
from tunesmith.config import build_config
from tunesmith.recipes.finetune import finetune

API_KEY = "test-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
FAST_EVALUATION = {"forgetting": False, "bootstrap_resamples": 200}


def classifier_run(
    folder: Path, labels: tuple[str, ...], train: int = 90, seed: int = 42, **settings: object
) -> Path:
    """A LoRA MiniLM classifier on a slice of the shipped demo data (2 epochs); `settings`: more train keys."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: str(v) for k, v in demo_files(folder, labels, train=train, validation=30, test=45).items()}
    tree = {
        "model": {"name": "minilm", "max_length": 64},
        "data": data,
        "method": {"name": "lora", "rank": 8},
        "train": {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "seed": seed, **settings},
        "evaluation": FAST_EVALUATION,
        "output_dir": str(folder / "run"),
    }
    finetune(build_config(tree), Console(file=io.StringIO()))
    return folder / "run"


def chat_run(folder: Path) -> Path:
    """A LoRA SmolLM2 chat run on a few of the shipped Debian chats (1 epoch)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", 16), ("validation", 2), ("test", 2)):
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("\n".join(chat_rows(split, n)) + "\n", encoding="utf-8")
    tree = {
        "task": {"name": "chat", "eval_generate_examples": 1, "generation": {"max_new_tokens": 16}},
        "model": {"name": "smollm2-135m-instruct", "max_length": 160},
        "data": {k: str(v) for k, v in files.items()},
        "method": {"name": "lora", "rank": 4, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "early_stopping_patience": None},
        "evaluation": FAST_EVALUATION,
        "output_dir": str(folder / "run"),
    }
    finetune(build_config(tree), Console(file=io.StringIO()))
    return folder / "run"


def assert_answers_as_the_run(client, model: str, messages: list[dict[str, str]], run: Path):
    """Through the official openai `client`: the served answer is the run's own greedy answer, whole and
    streamed (chunk by chunk, same usage), and a stop string cuts it where the word begins. Returns the
    whole reply."""
    from tunesmith.inference import load_run

    reply = client.chat.completions.create(model=model, messages=messages)
    text = reply.choices[0].message.content
    trained = load_run(run)
    assert text == trained.task.answer(trained.model, messages, trained.pad_id)  # the run's own greedy answer
    assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].finish_reason in ("stop", "length")

    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert sum(1 for p in pieces if p) > 2 and "".join(pieces).strip() == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

    word = text.split()[2]
    cut = client.chat.completions.create(model=model, messages=messages, stop=[word], temperature=0)
    assert cut.choices[0].message.content == text[: text.index(word)].strip()
    assert cut.choices[0].finish_reason == "stop"
    return reply


class Server:
    """`tunesmith serve` in a subprocess; `url` once it listens."""

    def __init__(self, runs: list[str], folder: Path, *flags: str, start_seconds: float = 120):
        folder.mkdir(parents=True, exist_ok=True)
        self.start_seconds = start_seconds
        keys, admin = folder / "keys.txt", folder / "admin.txt"
        keys.write_text(f"# clients\n{API_KEY}\n")
        admin.write_text(f"{ADMIN_KEY}\n")
        self.args = [
            *runs,
            "--port",
            "0",
            "--api-key-file",
            str(keys),
            "--admin-key-file",
            str(admin),
            *flags,
        ]
        self.output = folder / "server.log"
        self.start()

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
        self.log_handle = self.output.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", "serve", *self.args],
            stdout=self.log_handle,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        deadline = time.time() + self.start_seconds
        while time.time() < deadline:
            found = re.search(r"listening on (http://[\d.]+:\d+)", self.output.read_text())
            if found:
                self.url = found.group(1)
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output.read_text()}")
            time.sleep(0.2)
        else:
            raise RuntimeError(f"server did not start: {self.output.read_text()}")
        for _ in range(100):  # the socket is bound before uvicorn serves on it
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server never answered /health")

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log_handle.close()
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_for_version(self, name: str, version: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if httpx.get(f"{self.url}/health").json()["models"][name]["version"] == version:
                return
            time.sleep(0.25)
        raise AssertionError(f"{name} never switched to {version}: {self.output.read_text()[-2000:]}")
