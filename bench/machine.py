"""How close a training run comes to the machine: the useful FLOPs of the tokens it trained, and the matmul
peak of the same machine, measured in the same run.

Useful FLOPs follow the usual model-FLOPs accounting (PaLM's MFU), counted from the data, not from what an
implementation happens to compute, so every side of a benchmark is credited the same work:
- each token costs 2N in the forward pass, where N counts the weights of every linear layer the token goes
  through (the vocabulary projection included; an embedding lookup is not a multiply);
- the backward pass costs 2N more where the base weights are frozen (LoRA and the other adapters need the
  gradient of the activations only) and 4N where they are trained (activations and weights);
- attention adds, per layer and per sequence of L tokens, 2·L²·d in the forward pass (QKᵀ and the weighted
  sum of V, each 2·L²·d over the whole square, halved because a causal mask leaves the lower triangle) and
  twice that backward; an encoder's mask is not causal: 4·L²·d forward. Packed examples count apart (they
  do not attend to each other); padding counts nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def matmul_peak(
    dtype_name: str = "float32", n: int = 2048, seconds: float = 3.0, device: str = "cpu"
) -> float:
    """FLOP/s of a square n x n matmul in `dtype_name`, repeated for `seconds` after two warm-up calls, on
    torch's threads (or the GPU): what this machine's matmul library reaches at its best, the ceiling a
    training step is measured against."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, dtype=dtype, device=device)
    for _ in range(2):
        torch.mm(a, b, out=out)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(10 if device.startswith("cuda") else 1):
            torch.mm(a, b, out=out)
            count += 1
        sync()
        elapsed = time.perf_counter() - started
    return 2 * n**3 * count / elapsed


def linear_weights(model) -> int:
    """The weights of every linear layer of a transformers model (the vocabulary projection included, tied or
    not; embeddings, norms and biases not)."""
    import torch

    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not isinstance(head, torch.nn.Linear):
        total += head.weight.numel()
    return total


def training_flops(
    lengths: list[int], weights: int, hidden: int, layers: int, *, frozen_base: bool, causal: bool = True
) -> float:
    """Useful FLOPs of training once on sequences of `lengths` tokens (see the module's docstring)."""
    per_token = (2 + (2 if frozen_base else 4)) * weights
    square = sum(length * length for length in lengths)
    attention_forward = (2 if causal else 4) * square * hidden * layers
    return per_token * sum(lengths) + 3 * attention_forward


def describe(useful_per_second: float, peak: float) -> str:
    return f"{useful_per_second / 1e9:.1f} GFLOP/s useful, {100 * useful_per_second / peak:.0f}% of the peak"


def write_results(path: Path, runs: dict, summary: dict, *, bf16: bool, peak: float, flops: float) -> None:
    """A training benchmark's --json: the machine it ran on (CPU, precision, matmul peak, useful FLOPs), every
    run and the summary."""
    from tunesmith.hardware import cpu_features

    machine = {
        "cpu": cpu_features().describe(),
        "bf16": bf16,
        "matmul_peak_flops": peak,
        "useful_flops": flops,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "runs": runs, "summary": summary}, indent=2))
