"""Where the time of a chat LoRA training step goes: the torch profiler over tunesmith's own training loop.

The run is bench/chat.py's tunesmith side (SmolLM2-135M-Instruct, LoRA r=16 on all seven projections, dropout
0.05, batch 8, max_length 256, packed; data/debian-chat). The profiler skips the first steps (warm-up), then
records `--steps` steps and attributes every operator's own CPU time to one part of the step:

- matmuls: the frozen base model's projections, forward and backward (aten::mm/addmm);
- LoRA: the adapters' rank-r matmuls and their dropout masks and adds (a matmul with the rank as a dimension,
  and everything done inside the fused LoRA function or its backward that is not a base matmul);
- attention: scaled-dot-product attention (or tunesmith's segment attention's matmuls and softmax), forward
  and backward;
- LM head and loss: the vocabulary projection (a matmul with the vocabulary as a dimension), log-softmax, loss;
- optimizer: AdamW's step and zeroing the gradients;
- data: the DataLoader's next batch (collation, packing);
- other: norms, activations, rotary embeddings, residual adds, casts, copies;
- outside operators: the rest of the step's wall time (Python, the training loop, the autograd engine).

    python bench/profile_step.py [--precision fp32|bf16|auto] [--steps 4] [--examples 96] [--top 15]

Prints the parts as seconds per step and shares of the step, then the operators with the most own time.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from chat import DATA, LORA, MODEL, TRAIN, read_chats

MATMULS = {
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::addmm_",
    "aten::baddbmm",
    "aten::_weight_int4pack_mm",
}
ATTENTION = ("scaled_dot_product", "flash_attention", "_efficient_attention", "aten::_softmax")
"""Operators (or their callers) counted as attention. tunesmith's segment attention (models/
segment_attention.py) runs short examples as batched matmuls, which only attention uses in these models."""
ATTENTION_OPS = {"aten::bmm", "aten::masked_fill_", "aten::_softmax_backward_data"}
LOSS = ("log_softmax", "nll_loss", "cross_entropy")


def parts_of(events, vocab: int, rank: int) -> dict[str, float]:
    """Own CPU time in seconds per part of the step, from the profiler's event tree."""
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.device_type.name != "CPU" or event.name.startswith("ProfilerStep"):
            continue
        own = event.self_cpu_time_total / 1e6
        if own <= 0:
            continue
        totals[part_of(event, vocab, rank)] += own
    return dict(totals)


def part_of(event, vocab: int, rank: int) -> str:
    ancestors = []
    parent = event.cpu_parent
    while parent is not None:
        ancestors.append(parent.name)
        parent = parent.cpu_parent
    names = [event.name, *ancestors]
    if any(n.startswith("enumerate(DataLoader)") for n in names):
        return "data"
    if any(n.startswith("Optimizer.") for n in names):
        return "optimizer"
    if event.name in ATTENTION_OPS or any(any(a in n for a in ATTENTION) for n in names):
        return "attention"
    if event.name in MATMULS:
        dims = {d for shape in event.input_shapes for d in shape}
        if vocab in dims:
            return "LM head and loss"
        if rank in dims:
            return "LoRA"
        return "matmuls"
    if any(any(a in n for a in LOSS) for n in names):
        return "LM head and loss"
    if any("_LoraLinear" in n for n in names) or event.name in {"aten::rand", "aten::uniform_", "aten::ge"}:
        return "LoRA"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=4, help="steps recorded (after 3 skipped, 1 warm-up)")
    parser.add_argument("--examples", type=int, default=96, help="training chats (8 a step)")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    parser.add_argument("--shapes", action="store_true", help="list operators by input shapes too")
    parser.add_argument("--json", type=Path, help="also write the parts here")
    a = parser.parse_args()

    import torch
    from rich.console import Console
    from torch.profiler import ProfilerActivity, profile, schedule

    from tunesmith.config import build_config
    from tunesmith.hardware import cpu_features
    from tunesmith.recipes.finetune import finetune

    chats = read_chats(DATA / "train.jsonl", a.examples)
    walls: list[float] = []
    skip, warm = 3, 1
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        train.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
        cfg = build_config(
            {
                "task": {"name": "chat", "packing": True, "eval_generate_examples": 0},
                "model": {"name": MODEL, "max_length": TRAIN["max_length"]},
                "data": {
                    "train": str(train),
                    "validation": str(DATA / "validation.jsonl"),
                    "test_fraction": 0.0,
                },
                "method": {"name": "lora", **LORA},
                "train": {
                    "epochs": 1,
                    "batch_size": TRAIN["batch_size"],
                    "learning_rate": TRAIN["learning_rate"],
                    "seed": 1,
                    "metric": "loss",
                    "precision": a.precision,
                    "early_stopping_patience": None,
                },
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        last = [0.0]
        prof = profile(
            activities=[ProfilerActivity.CPU],
            schedule=schedule(wait=skip, warmup=warm, active=a.steps, repeat=1),
            record_shapes=True,
        )

        def on_step(state, loss) -> None:
            now = time.perf_counter()
            if last[0]:
                walls.append(now - last[0])
            last[0] = now
            prof.step()

        with prof:
            last[0] = time.perf_counter()
            finetune(cfg, Console(file=io.StringIO()), on_step=[on_step], final_evaluation=False)
    recorded = walls[skip + warm : skip + warm + a.steps]
    if len(recorded) < a.steps:
        raise SystemExit(f"only {len(walls)} steps ran: give more --examples")
    wall = sum(recorded) / len(recorded)
    parts = {k: v / a.steps for k, v in parts_of(prof.events(), vocab=49152, rank=LORA["rank"]).items()}
    parts["outside operators"] = max(0.0, wall - sum(parts.values()))
    print(
        f"CPU: {cpu_features().describe()}; torch threads {torch.get_num_threads()}; precision {a.precision}"
    )
    print(f"step: {wall:.3f} s (mean of {a.steps} recorded steps of batch 8, max_length 256, packed)")
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:20} {seconds:7.3f} s  {100 * seconds / wall:5.1f}%")
    table = prof.key_averages(group_by_input_shape=a.shapes).table(
        sort_by="self_cpu_time_total", row_limit=a.top
    )
    print(table)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(
            json.dumps({"precision": a.precision, "step_seconds": wall, "parts_seconds": parts}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
