"""The server's settings: one typed section, from `tunesmith serve` flags or a YAML file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunesmith.plugin import Section

EngineName = Literal["torch", "llama.cpp", "onnx"]
"""What computes a run's answers (serving/engines.py)."""


class ServeSettings(Section):
    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 serves other machines too (put TLS in front)."""
    port: int = Field(8000, ge=0, le=65535)
    """0 picks a free port (printed at start)."""
    auth: bool = True
    """Require `Authorization: Bearer KEY` on every endpoint but /health. Off only when asked (--no-auth)."""
    api_keys: list[str] = Field(default_factory=list, repr=False)
    """Keys a client may send (read from --api-key-file, one per line)."""
    admin_keys: list[str] = Field(default_factory=list, repr=False)
    """Keys for /admin endpoints (version switches); none: those endpoints are off unless auth is off."""
    max_body_bytes: int = Field(1_000_000, gt=0)
    """A larger request body is refused with 413 before it is read."""
    max_input_chars: int = Field(20_000, gt=0)
    """Longest text in one input or message (413 beyond)."""
    max_inputs: int = Field(256, gt=0)
    """Most texts in one /v1/classify request (413 beyond)."""
    max_tokens: int = Field(512, gt=0)
    """Cap on max_tokens of a chat completion."""
    batch_size: int = Field(32, gt=0)
    """Most texts (or chats decoding together) in one forward pass; 1 turns batching off."""
    chat_cache_mb: float = Field(1024, gt=0)
    """Torch engine: most memory the key/value cache of a model's chats decoding together may take (rows x
    the longest row's prompt and max_tokens, padding included). A chat that would push it past waits for room;
    max_tokens is cut to what fits alone, and a prompt that cannot fit alone is refused with 400
    context_length_exceeded. 1,024 MB holds 32 chats of 700 tokens on SmolLM2-135M in fp32 (46 KB a token)."""
    batch_wait_ms: float = Field(2.0, ge=0)
    """How long a batch that is not full waits for more requests to join it."""
    max_queue: int = Field(1024, gt=0)
    """Most texts (or chats) waiting per model; more are refused with 503 and Retry-After."""
    log_url: str | None = None
    """SQLAlchemy URL of the request log (postgresql://...); empty: SQLite at RUN/requests.db per run."""
    watch_seconds: float = Field(2.0, gt=0)
    """How often each run's serving.json is checked for a promoted or rolled-back version."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the torch engine runs (llama.cpp runs on the CPU: the `gguf` extra builds it without CUDA)."""
    engine: EngineName = "torch"
    """What computes answers: the run's own torch model; llama.cpp on a chat run's GGUF export; ONNX Runtime
    on a classifier's or embedding run's ONNX export (each export made and checked at start, then kept at
    VERSION/exports/; serving/engines.py). Runs the engine does not take are served by torch. At f16,
    llama.cpp served a SmolLM2 run's answers word for word at 6.5x the torch engine's tokens/s on 2 CPU
    cores (bench/serve_engines.py)."""
    quant: str | None = None
    """The GGUF's quantization for the llama.cpp engine: f16 (the default: the run's exact greedy answers),
    f32, q8_0, q4_k_m, q5_k_m, q6_k (smaller and faster; checked by next-token agreement with the run)."""
    context_tokens: int = Field(4096, gt=0)
    """llama.cpp engine: prompt and answer tokens together that a conversation may take (its KV cache is
    allocated for this many; a longer conversation is refused with 400 context_length_exceeded)."""
